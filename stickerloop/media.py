"""Media by permission: the one owner of media URLs, the staff rule and the signed rater grants.

Two ways to a stored file, from a local folder or a bucket alike:

- ``/media/<key>`` (``media_url``): the staff pages (gallery, campaign and dataset version
  pages). Curators, ML engineers and admins may open any stored file except exports, which go
  only through the export API's download endpoint and its audit record. Everyone else: 404.
- ``/rate/media/<grant>/<position>/<part>`` (``granted_url``): what raters get. ``grant`` is a
  signed, expiring token for one scope (an item, or a campaign's guideline examples) and one
  user; the URL names neither the candidate nor its storage key, so it carries nothing about
  the model that made the file. The token proves the URL was handed to this user lately; whether
  the user may still see the scope (a live lease, a judgment, a membership) is asked afresh on
  every fetch by the app that knows it (``annotation``: this module imports no app).

A file is streamed by Django from a folder; from a bucket the answer is a redirect to a
presigned URL that expires like the grant (``STICKERLOOP_MEDIA_URL_SECONDS``).
"""

import mimetypes
from pathlib import Path

from django.conf import settings
from django.core import signing
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.cache import patch_cache_control

from stickerloop.authentication import login_or_token_required
from stickerloop.roles import Role, has_role

# Exports leave only through the export API (role gate and audit log), never as raw media.
EXPORTS_PREFIX = "exports/"
_GRANT_SALT = "stickerloop.media.grant"


def media_url(key: str) -> str:
    """The staff pages' URL of a stored file (see ``staff_may_view``)."""
    return reverse("media", kwargs={"key": key}) if key else ""


def staff_may_view(user, key: str) -> bool:
    """Staff roles (curator, ML engineer, admin) see any stored file but exports."""
    return has_role(user, Role.CURATOR, Role.ML_ENGINEER) and not key.startswith(EXPORTS_PREFIX)


def grant_seconds() -> int:
    return settings.STICKERLOOP_MEDIA_URL_SECONDS


def _signer(user_id: int) -> signing.TimestampSigner:
    # The user is in the salt, not in the token: a grant works for the user it was made for.
    return signing.TimestampSigner(salt=f"{_GRANT_SALT}:{user_id}")


def grant_token(*, user_id: int, scope: str) -> str:
    """A signed token for ``scope`` (an opaque word of the caller's, e.g. ``i42``) and the user;
    one per item, so the payload's many URLs cost one signature."""
    return _signer(user_id).sign(scope)


def grant_scope(*, token: str, user_id: int) -> str | None:
    """The scope a token grants this user, or None when it is forged, another user's or older
    than ``grant_seconds``."""
    try:
        return _signer(user_id).unsign(token, max_age=grant_seconds())
    except signing.BadSignature:  # SignatureExpired is one
        return None


_granted_prefix: str | None = None


def granted_url(token: str, position: int, part: str) -> str:
    """A rater's URL of one file (``part``: file, source, frame-<n>, strip) of the candidate
    shown at ``position`` in the token's scope. Built without a resolver call per file, since a
    payload carries many files."""
    global _granted_prefix
    if _granted_prefix is None:
        _granted_prefix = reverse(
            "rate-media", kwargs={"token": "t", "position": 0, "part": "file"}
        ).removesuffix("t/0/file")
    return f"{_granted_prefix}{token}/{position}/{part}"


def _is_folder(key: str) -> bool:
    """Whether a key names a local folder (exists() says yes to those; opening one fails)."""
    try:
        return Path(default_storage.path(key)).is_dir()
    except NotImplementedError:  # a bucket: a "folder" is no object, and exists() said no
        return False


def media_response(key: str | None) -> HttpResponse:
    """The stored file at ``key``: streamed from a folder, or a redirect to a presigned bucket
    URL. Assumes the caller checked that the user may see it. 404 for no key or no file.

    Keys are immutable per candidate, so the browser may keep a file for an hour; a redirect
    only for half the presigned URL's life, so a cached one never leads to an expired URL.
    """
    if not key or ".." in key.split("/"):
        raise Http404("No such file.")
    if not default_storage.exists(key) or _is_folder(key):
        raise Http404("No such file.")
    if hasattr(default_storage, "bucket_name"):
        response = HttpResponseRedirect(default_storage.url(key))
        patch_cache_control(response, private=True, max_age=grant_seconds() // 2)
        return response
    content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
    response = FileResponse(default_storage.open(key, "rb"), content_type=content_type)
    patch_cache_control(response, private=True, max_age=3600)
    return response


@login_or_token_required
def media_serve(request, key: str):
    """A stored file for the staff pages and for staff scripts holding an API token (a
    candidate's ``file_url``). 404, not 403, for anyone else: the answer does not say whether
    the key exists."""
    if not staff_may_view(request.user, key):
        raise Http404("No such file.")
    return media_response(key)
