"""Pages show times in the reader's time zone: the browser names it in the ``tz`` cookie
(static/js/timezone.js) and this middleware turns it on for the request. The API keeps UTC, so
a client's output does not depend on a browser's cookie."""

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.utils import timezone

from stickerloop.middleware import API_PREFIX

COOKIE = "tz"
# IANA names are short ("America/Argentina/ComodRivadavia" is among the longest); a longer
# cookie is not one, and is not worth a lookup.
MAX_NAME = 64


def zone_from_cookie(value: str | None) -> ZoneInfo | None:
    """The time zone ``value`` names, or None for a missing, overlong or unknown name."""
    if not value or len(value) > MAX_NAME:
        return None
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return None


class TimeZoneMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        zone = None
        if not request.path.startswith(API_PREFIX):
            zone = zone_from_cookie(request.COOKIES.get(COOKIE))
        if zone is None:
            timezone.deactivate()
            return self.get_response(request)
        with timezone.override(zone):
            return self.get_response(request)
