"""Every password the site sets passes the validators (ASVS 2.1.1, 2.1.7): at least 12 characters,
not a common (breached) password, not close to the username. The admin's forms and
user_create_with_roles (the demo setup's and the tests' way in) refuse the rest, and store
nothing."""

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.test import Client

from stickerloop.services import user_create_with_roles
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

TOO_SHORT = "This password is too short. It must contain at least 12 characters."
TOO_COMMON = "This password is too common."
TOO_SIMILAR = "The password is too similar to the username."
REFUSED = [
    ("short-pw", [TOO_SHORT]),
    ("password1234", [TOO_COMMON]),
    ("kimberly2024", [TOO_SIMILAR]),
    ("abc", [TOO_SHORT, TOO_COMMON]),
]


@pytest.fixture
def superuser_client():
    root = get_user_model().objects.create_superuser(username="root", password=PASSWORD)
    client = Client()
    client.force_login(root)
    return client


def _add_user(client, password: str):
    return client.post(
        "/admin/auth/user/add/",
        {
            "username": "kimberly",
            "usable_password": "true",
            "password1": password,
            "password2": password,
            "_save": "Save",
        },
    )


@pytest.mark.parametrize(("password", "errors"), REFUSED)
def test_the_admin_refuses_a_weak_password_for_a_new_user(superuser_client, password, errors):
    # when
    response = _add_user(superuser_client, password)
    # then
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"password2": errors}
    for message in errors:
        assert message in response.content.decode()
    assert list(get_user_model().objects.values_list("username", flat=True)) == ["root"]


def test_the_admin_takes_a_long_uncommon_password(superuser_client):
    response = _add_user(superuser_client, "violet otter lamp")
    assert response.status_code == 302
    assert get_user_model().objects.get(username="kimberly").check_password("violet otter lamp")


@pytest.mark.parametrize(("password", "errors"), REFUSED)
def test_the_admin_refuses_a_weak_password_change(superuser_client, password, errors):
    kim = user_create_with_roles(username="kimberly", password=PASSWORD, roles=["rater"])
    response = superuser_client.post(
        f"/admin/auth/user/{kim.pk}/password/",
        {"usable_password": "true", "password1": password, "password2": password},
    )
    assert response.status_code == 200
    assert response.context["form"].errors == {"password2": errors}
    kim.refresh_from_db()
    assert kim.check_password(PASSWORD)


@pytest.mark.parametrize(("password", "errors"), REFUSED)
def test_the_service_refuses_a_weak_password_and_stores_nothing(password, errors):
    with pytest.raises(ValidationError) as caught:
        user_create_with_roles(username="kimberly", password=password, roles=["rater"])
    assert caught.value.message_dict == {"password": errors}
    assert not get_user_model().objects.exists()


def test_the_service_keeps_the_old_password_when_a_reset_is_refused():
    kim = user_create_with_roles(username="kimberly", password=PASSWORD, roles=["rater"])
    with pytest.raises(ValidationError) as caught:
        user_create_with_roles(username="kimberly", password="short-pw", roles=["curator"])
    assert caught.value.message_dict == {"password": [TOO_SHORT]}
    kim.refresh_from_db()
    assert kim.check_password(PASSWORD)
    assert list(kim.groups.values_list("name", flat=True)) == ["rater"]


def test_the_service_compares_with_an_existing_users_email():
    user_create_with_roles(
        username="kim", password=PASSWORD, roles=["rater"], email="olivia.kowalski@example.org"
    )
    with pytest.raises(ValidationError) as caught:
        user_create_with_roles(username="kim", password="olivia.kowalski@example", roles=["rater"])
    assert caught.value.message_dict == {
        "password": ["The password is too similar to the email address."]
    }
