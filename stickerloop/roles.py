"""Roles are Django groups; every API and page names the roles it serves."""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.backends import ModelBackend
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


class RoleModelBackend(ModelBackend):
    """Django's model backend, in which the admin role holds every model permission.

    The admin role holds every role, so it may change every model in the Django admin, as a
    superuser may; ``user_create_with_roles`` makes its users staff, which the admin site also
    asks. Granting through the role rather than rows of ``auth_permission`` covers the models of
    later migrations too, and taking the role away takes the permissions with it. Every other
    user keeps Django's rules (their own and their groups' permissions)."""

    def has_perm(self, user_obj, perm, obj=None) -> bool:
        if user_obj.is_active and Role.ADMIN in user_roles(user_obj):
            return True
        return super().has_perm(user_obj, perm, obj)

    def has_module_perms(self, user_obj, app_label) -> bool:
        if user_obj.is_active and Role.ADMIN in user_roles(user_obj):
            return True
        return super().has_module_perms(user_obj, app_label)
