"""The Django admin site for the admin role: staff through ``user_create_with_roles``, every model
permission through ``stickerloop.roles.RoleModelBackend``; no other role gets in."""

from importlib import import_module

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from annotation.models import Campaign
from stickerloop.management.commands.demo_setup import DEMO_PASSWORD
from stickerloop.services import user_create_with_roles
from tests import factories as f

pytestmark = pytest.mark.django_db
NOTHING = "You don’t have permission to view or edit anything."


def _browser(username: str, password: str = f.PASSWORD) -> Client:
    client = Client()
    response = client.post("/admin/login/", {"username": username, "password": password})
    assert response.status_code == 302, response.content.decode()[:500]
    return client


def test_the_admin_role_sees_and_changes_the_models():
    f.user("boss", ["admin"])
    campaign = f.running_campaign(raters=[f.rater("rob")], n_items=1, name="Old name")
    client = _browser("boss")

    index = client.get("/admin/")
    changelist = client.get("/admin/annotation/campaign/")
    users = client.get("/admin/auth/user/")
    change = client.get(f"/admin/annotation/campaign/{campaign.pk}/change/")

    assert index.status_code == 200
    html = index.content.decode()
    assert NOTHING not in html
    for link in (
        "/admin/annotation/campaign/",
        "/admin/auth/user/",
        "/admin/generation/candidate/",
        "/admin/training_bridge/datasetversion/",
    ):
        assert f'href="{link}"' in html
    assert (changelist.status_code, users.status_code, change.status_code) == (200, 200, 200)
    assert "Old name" in changelist.content.decode()


def test_the_admin_role_deletes_a_user_after_confirming():
    f.user("boss", ["admin"])
    rob = f.rater("rob")
    client = _browser("boss")

    confirm = client.get(f"/admin/auth/user/{rob.pk}/delete/")
    deleted = client.post(f"/admin/auth/user/{rob.pk}/delete/", {"post": "yes"})

    assert confirm.status_code == 200
    assert "Are you sure you want to delete the user" in confirm.content.decode()
    assert deleted.status_code == 302
    assert not get_user_model().objects.filter(pk=rob.pk).exists()


def test_the_read_only_tables_stay_read_only_for_the_admin_role():
    f.user("boss", ["admin"])
    campaign = f.running_campaign(raters=[], n_items=1, name="Kept")
    client = _browser("boss")

    response = client.get(f"/admin/annotation/campaign/{campaign.pk}/delete/")

    assert response.status_code == 403
    assert Campaign.objects.filter(pk=campaign.pk).exists()


def test_the_demo_admin_is_let_in():
    f.ensure_roles()
    user_create_with_roles(
        username="admin", password=DEMO_PASSWORD, roles=["admin", "curator", "ml_engineer", "rater"]
    )

    index = _browser("admin", DEMO_PASSWORD).get("/admin/")

    assert index.status_code == 200
    assert NOTHING not in index.content.decode()


@pytest.mark.parametrize("role", ["rater", "curator", "ml_engineer"])
def test_other_roles_are_sent_to_the_admin_login(role):
    f.user("someone", [role])
    client = Client()
    client.login(username="someone", password=f.PASSWORD)

    response = client.get("/admin/annotation/campaign/")

    assert (response.status_code, response["Location"]) == (
        302,
        "/admin/login/?next=/admin/annotation/campaign/",
    )


def test_a_staff_user_without_the_admin_role_gets_only_their_own_permissions():
    # given: staff (set by hand) holding the curator role and no model permission
    user = f.user("staffer", ["curator"])
    user.is_staff = True
    user.save()

    client = _browser("staffer")

    assert NOTHING in client.get("/admin/").content.decode()
    assert client.get("/admin/annotation/campaign/").status_code == 403


def test_losing_the_admin_role_loses_the_admin_site():
    boss = f.user("boss", ["admin"])
    client = _browser("boss")
    boss.groups.set([Group.objects.get(name="curator")])

    response = client.get("/admin/annotation/campaign/")

    assert response.status_code == 403


def test_the_migration_makes_existing_admins_staff():
    migration = import_module("stickerloop.migrations.0002_admin_role_staff")
    boss = f.user("boss", ["admin"])
    get_user_model().objects.filter(pk=boss.pk).update(is_staff=False)
    rob = f.rater("rob")

    migration.admin_role_is_staff(apps, None)

    boss.refresh_from_db()
    rob.refresh_from_db()
    assert (boss.is_staff, rob.is_staff) == (True, False)
