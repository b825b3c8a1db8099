"""Pages show times in the reader's time zone: the browser names it in the ``tz`` cookie
(static/js/timezone.js) and this middleware turns it on for the request. The API calls a page
makes carry the cookie too, so "judged today" on the rating screen, drawn by the page and then
moved by the API, counts from the same midnight; clients without the cookie get UTC."""

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.utils import timezone

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
        zone = zone_from_cookie(request.COOKIES.get(COOKIE))
        if zone is None:
            timezone.deactivate()
            return self.get_response(request)
        with timezone.override(zone):
            return self.get_response(request)
