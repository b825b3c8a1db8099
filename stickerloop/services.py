"""Project-level writes: users, their roles and their API tokens."""

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from stickerloop.roles import Role


@transaction.atomic
def user_create_with_roles(
    *, username: str, password: str | None, roles: list[str], email: str = ""
):
    """Create a user holding ``roles`` (or reset the password and roles of an existing one).

    The password must pass AUTH_PASSWORD_VALIDATORS, checked against the user it is for (an
    existing one's stored name and email); else ValidationError on ``password`` and nothing is
    written. ``password=None`` makes an account that cannot log in with a password, only with
    an API token (``token_issue``): a script's account, such as a simulated rater's.
    """
    unknown = sorted(set(roles) - set(Role.values))
    if unknown:
        raise ValidationError({"roles": [f"Unknown role(s): {', '.join(unknown)}."]})
    user_model = get_user_model()
    if password is not None:
        existing = user_model.objects.filter(username=username).first()
        try:
            password_validation.validate_password(
                password, existing or user_model(username=username, email=email)
            )
        except ValidationError as exc:
            raise ValidationError({"password": exc.messages}) from exc
    user, _ = user_model.objects.get_or_create(username=username, defaults={"email": email})
    if password is None:
        user.set_unusable_password()
    else:
        user.set_password(password)
    user.is_staff = Role.ADMIN in roles
    user.save()
    # get_or_create: the groups come from a data migration, but a flushed database (transactional
    # tests, `manage.py flush`) has none, and a role must still be grantable.
    user.groups.set([Group.objects.get_or_create(name=role)[0] for role in roles])
    return user


# API tokens --------------------------------------------------------------------------------------


def token_expires_at(token: Token) -> datetime:
    return token.created + timedelta(hours=settings.TOKEN_TTL_HOURS)


def token_issue(*, user) -> Token:
    """The user's API token: the current one while it is valid, else a new one.

    get_or_create on the one-token-per-user constraint: two logins at once get the same token.
    """
    token, _ = Token.objects.get_or_create(user=user)
    if token_expires_at(token) <= timezone.now():
        Token.objects.filter(pk=token.pk).delete()
        token, _ = Token.objects.get_or_create(user=user)
    return token


def token_revoke(*, user) -> bool:
    """Delete the user's API token; False when they held none."""
    deleted, _ = Token.objects.filter(user=user).delete()
    return deleted > 0
