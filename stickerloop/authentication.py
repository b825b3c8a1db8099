"""API authentication: sessions for the browser, tokens that expire for scripts."""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.utils import timezone
from drf_spectacular.authentication import SessionScheme
from rest_framework import authentication, exceptions

from stickerloop.services import token_expires_at

EXPIRED_MESSAGE = "The token has expired; ask for a new one at POST /api/auth/token/."


class SessionAuthentication(authentication.SessionAuthentication):
    """DRF's session authentication, answering 401 to a caller that sent a token.

    DRF takes the WWW-Authenticate header, and so 401 rather than 403, from the first class
    listed; sessions come first so that the browser's pages keep their 403s, but a script whose
    token expired or was revoked must see 401 to know it should log in again.
    """

    def authenticate_header(self, request):
        if request.META.get("HTTP_AUTHORIZATION", "").startswith("Token "):
            return "Token"
        return None


class ExpiringTokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication; a token older than STICKERLOOP_TOKEN_TTL_HOURS is refused."""

    def authenticate_credentials(self, key):
        user, token = super().authenticate_credentials(key)
        if token_expires_at(token) <= timezone.now():
            raise exceptions.AuthenticationFailed(EXPIRED_MESSAGE)
        return user, token


class SessionAuthenticationScheme(SessionScheme):
    """The OpenAPI description of our session class: drf-spectacular's, which matches by path."""

    target_class = "stickerloop.authentication.SessionAuthentication"


def login_or_token_required(view):
    """Page decorator for files that scripts fetch as well as browsers (a rater's media): a
    request that sends ``Authorization: Token <key>`` is signed in by its token, and answered
    401 when the token is unknown or expired; any other request needs a login, as
    ``login_required`` asks (a redirect to the login page)."""
    session_view = login_required(view)

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.META.get("HTTP_AUTHORIZATION", "").startswith("Token "):
            return session_view(request, *args, **kwargs)
        try:
            user, _ = ExpiringTokenAuthentication().authenticate(request)
        except exceptions.AuthenticationFailed as exc:
            return JsonResponse(
                {"detail": str(exc.detail)}, status=401, headers={"WWW-Authenticate": "Token"}
            )
        request.user = user
        return view(request, *args, **kwargs)

    return wrapped
