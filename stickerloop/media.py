"""Media behind login: files are served from the configured storage, local folder or bucket."""

import mimetypes
from pathlib import Path

from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.cache import cache_control


def media_url(key: str) -> str:
    return reverse("media", kwargs={"key": key}) if key else ""


def _is_folder(key: str) -> bool:
    """Whether a key names a local folder (exists() says yes to those; opening one fails)."""
    try:
        return Path(default_storage.path(key)).is_dir()
    except NotImplementedError:  # a bucket: a "folder" is no object, and exists() said no
        return False


@login_required
@cache_control(private=True, max_age=3600)
def media_serve(request, key: str):
    """Stream a stored file. Keys are immutable per candidate, so the browser may cache them."""
    if ".." in key.split("/"):
        raise Http404("No such file.")
    if not default_storage.exists(key) or _is_folder(key):
        raise Http404("No such file.")
    if hasattr(default_storage, "bucket_name"):
        return HttpResponseRedirect(default_storage.url(key))
    content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
    return FileResponse(default_storage.open(key, "rb"), content_type=content_type)
