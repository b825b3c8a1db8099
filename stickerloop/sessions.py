"""How long a login lasts: an idle timeout and an absolute one (ASVS 3.3).

Django's database session ends SESSION_COOKIE_AGE (STICKERLOOP_SESSION_IDLE_SECONDS) after it was
last saved: its row's ``expire_date`` and the cookie's Max-Age both move when it is saved. Django
saves a session only when a view changed it, so a busy session would end mid-work; its
SESSION_SAVE_EVERY_REQUEST would write the session row on every request, the rating API's
included. This middleware saves an otherwise unchanged logged-in session at most once every
REFRESH_SECONDS (5 minutes, or half the idle time when that is shorter): a session in use stays
alive, one left alone for the idle time ends, and one left alone for a little less (at most
REFRESH_SECONDS less) may end too. That is one row write per user per 5 minutes.

However busy, a session ends SESSION_MAX_SECONDS (STICKERLOOP_SESSION_MAX_SECONDS) after its
login: the row is deleted, the request goes on as anonymous (a page redirects to the login page,
the API answers 403) and the user logs in again. Logging out deletes the row too (Django's
logout), so a copied cookie is worth nothing afterwards.

The login pages (stickerloop.views) start both clocks with ``session_clock_start`` in the save
that stores the login. A session without them (made by another way in, a test's force_login, or
before this policy) is never refreshed: it ends at its ``expire_date``, at most the idle time
after its last save.
"""

import time

from django.conf import settings

STARTED = "_stickerloop_login_at"
REFRESHED = "_stickerloop_refreshed_at"
REFRESH_SECONDS = 300


def refresh_seconds() -> int:
    return min(REFRESH_SECONDS, settings.SESSION_COOKIE_AGE // 2)


def session_clock_start(*, request) -> None:
    """Start the idle and absolute clocks of the session that ``login()`` just filled in."""
    now = int(time.time())
    request.session[STARTED] = now
    request.session[REFRESHED] = now


class SessionLifetimeMiddleware:
    """Sits right after SessionMiddleware and before AuthenticationMiddleware, so that a session
    it ends is anonymous for the rest of the request."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        session = request.session
        # Loading the session costs nothing extra: with a session cookie the authentication
        # middleware loads it for request.user anyway. Without a cookie nothing is read.
        if session.session_key is not None:
            started = session.get(STARTED)
            if started is not None and time.time() - started >= settings.SESSION_MAX_SECONDS:
                session.flush()  # deletes the row
        response = self.get_response(request)
        now = int(time.time())
        if REFRESHED in session and now - session[REFRESHED] >= refresh_seconds():
            session[REFRESHED] = now  # SessionMiddleware saves it: a new expiry and cookie
        return response
