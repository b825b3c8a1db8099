"""Project-level writes: users and their roles."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction

from stickerloop.roles import Role


@transaction.atomic
def user_create_with_roles(*, username: str, password: str, roles: list[str], email: str = ""):
    """Create a user holding ``roles`` (or reset the password and roles of an existing one)."""
    unknown = sorted(set(roles) - set(Role.values))
    if unknown:
        raise ValidationError({"roles": [f"Unknown role(s): {', '.join(unknown)}."]})
    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(username=username, defaults={"email": email})
    user.set_password(password)
    user.is_staff = Role.ADMIN in roles
    user.save()
    # get_or_create: the groups come from a data migration, but a flushed database (transactional
    # tests, `manage.py flush`) has none, and a role must still be grantable.
    user.groups.set([Group.objects.get_or_create(name=role)[0] for role in roles])
    return user
