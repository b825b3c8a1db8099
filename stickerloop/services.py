"""Project-level writes: users, their roles and their API tokens."""

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import Group
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
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


@transaction.atomic
def user_invite(*, username: str, email: str = "", roles: list[str]):
    """A new user holding ``roles``, with no password yet: they choose one through the link of
    ``password_set_path``. Unlike ``user_create_with_roles`` it never touches an existing
    account: a taken username is a ValidationError on ``username`` (also when two requests race:
    the second waits on the unique index and is refused the same way), and nothing is written.
    """
    user_model = get_user_model()
    username = (username or "").strip()
    email = (email or "").strip()
    errors: dict[str, list[str]] = {}
    if not username:
        errors["username"] = ["A username is required."]
    else:
        try:
            user_model.username_validator(username)
        except ValidationError:
            errors["username"] = [
                "Use at most 150 letters, digits and @ . + - _ (no spaces) for a username."
            ]
    if len(username) > 150:
        errors["username"] = ["A username has at most 150 characters."]
    if email:
        try:
            validate_email(email)
        except ValidationError:
            errors["email"] = [f"{email!r} is not an e-mail address."]
    unknown = sorted(set(roles) - set(Role.values))
    if unknown:
        errors["roles"] = [f"Unknown role(s): {', '.join(unknown)}."]
    if errors:
        raise ValidationError(errors)
    user = user_model(username=username, email=email, is_staff=Role.ADMIN in roles)
    user.set_unusable_password()
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError as exc:
        raise ValidationError({"username": [f"A user named {username!r} exists already."]}) from exc
    user.groups.set([Group.objects.get_or_create(name=role)[0] for role in roles])
    return user


def password_set_path(*, user) -> str:
    """The path of the user's one-time set-password page, from Django's token generator: the
    token is bound to the password and the last login, so it stops working once used (the
    password changed), and after PASSWORD_RESET_TIMEOUT."""
    return reverse(
        "password-set",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": default_token_generator.make_token(user),
        },
    )


def password_link_send(*, user, link: str, invited_by: str) -> None:
    """E-mail ``link`` (an absolute set-password URL) to the user, once the transaction that
    made them commits (a rolled-back invitation sends nothing). The backend is Django's
    EMAIL_BACKEND: SMTP when STICKERLOOP_EMAIL_HOST is set, the console otherwise."""
    if not user.email:
        raise ValidationError({"email": ["An e-mail address is needed to send the link."]})
    hours = settings.PASSWORD_RESET_TIMEOUT // 3600
    body = (
        f"Hello {user.get_username()},\n\n"
        f"{invited_by} invited you to rate stickers on Stickerloop. Choose your password here "
        f"(the link works once, for {hours} hours):\n\n{link}\n\n"
        f"Then log in as {user.get_username()}.\n"
    )
    recipient = user.email
    transaction.on_commit(
        lambda: send_mail(
            "Your Stickerloop rater account",
            body,
            settings.DEFAULT_FROM_EMAIL,
            [recipient],
        )
    )


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
