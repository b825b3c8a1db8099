"""Roles are Django groups; every API and page names the roles it serves."""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import models
from rest_framework.permissions import BasePermission


class Role(models.TextChoices):
    RATER = "rater", "Rater"
    CURATOR = "curator", "Data curator"
    ML_ENGINEER = "ml_engineer", "ML engineer"
    ADMIN = "admin", "Administrator"


def user_roles(user) -> frozenset[str]:
    """The user's role names; superusers hold every role. Cached on the user object per request."""
    if not user or not user.is_authenticated:
        return frozenset()
    cached = getattr(user, "_stickerloop_roles", None)
    if cached is None:
        if user.is_superuser:
            cached = frozenset(Role.values)
        else:
            cached = frozenset(
                user.groups.filter(name__in=Role.values).values_list("name", flat=True)
            )
        user._stickerloop_roles = cached
    return cached


def has_role(user, *roles: str) -> bool:
    held = user_roles(user)
    return Role.ADMIN in held or any(role in held for role in roles)


class HasRole(BasePermission):
    """DRF permission: the user holds one of ``roles`` (admin holds them all)."""

    roles: tuple[str, ...] = ()
    message = "Your role does not allow this."

    def has_permission(self, request, view) -> bool:
        return has_role(request.user, *self.roles)


def roles_permission(*roles: str) -> type[HasRole]:
    return type(f"HasRole_{'_'.join(roles)}", (HasRole,), {"roles": roles})


IsRater = roles_permission(Role.RATER)
IsCurator = roles_permission(Role.CURATOR)
IsEngineer = roles_permission(Role.ML_ENGINEER)
IsCuratorOrEngineer = roles_permission(Role.CURATOR, Role.ML_ENGINEER)
IsStaffRole = roles_permission(Role.CURATOR, Role.ML_ENGINEER, Role.RATER)


def role_required(*roles: str) -> Callable:
    """Page decorator: log in first, then hold one of ``roles`` (403 otherwise)."""

    def decorator(view):
        @login_required
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not has_role(request.user, *roles):
                raise PermissionDenied("Your role does not allow this page.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def roles_context(request) -> dict:
    roles = user_roles(getattr(request, "user", None))
    return {"user_roles": roles, "is_admin_role": Role.ADMIN in roles}
