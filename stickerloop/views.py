from django.contrib import admin, messages
from django.contrib.auth import authenticate
from django.contrib.auth import views as auth_views
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.templatetags.static import static
from django.urls import reverse_lazy
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from stickerloop import health, services
from stickerloop.login_throttle import (
    client_ip,
    login_failure_record,
    login_lock_remaining,
    login_success_record,
)
from stickerloop.middleware import API_PREFIX
from stickerloop.roles import user_roles
from stickerloop.schema import ErrorSerializer
from stickerloop.sessions import session_clock_start

LOCKED_MESSAGE = "Too many failed logins for this account or address."


@never_cache
@require_safe
def healthz(request):
    """Liveness: the process answers. Touches no database, broker or storage, so an outage of
    one of them never gets a healthy web process restarted."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_safe
def readyz(request):
    """Readiness: 200 when the database, the broker and the storage answer, else 503 naming the
    failing parts. Only the parts' names and states: the reasons go to the log."""
    checks = health.readiness()
    failing = [part for part in health.PARTS if checks[part] != health.OK]
    body = {"status": "unavailable" if failing else "ready", "checks": checks}
    if failing:
        body["failing"] = failing
    return JsonResponse(body, status=503 if failing else 200)


def favicon(request):
    """``/favicon.ico``, which browsers and tools ask for whatever the page's icon link says:
    the site's icon among its static files."""
    return redirect(static("favicon.svg"), permanent=True)


def not_found(request, exception):
    """Our 404 page (templates/404.html), or for API paths DRF's JSON shape: a URL that matches
    no route (an id that is not a number) answers like an id that matches no row."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def bad_request(request, exception):
    """Django's 400 page (a body Django cannot parse, e.g. multipart without a boundary), or for
    API paths DRF's JSON shape."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"detail": "The request could not be parsed."}, status=400)
    return defaults.bad_request(request, exception)


class MeApi(APIView):
    """Who the caller is and which roles they hold (any authenticated user)."""

    class OutputSerializer(serializers.Serializer):
        username = serializers.CharField()
        roles = serializers.ListField(child=serializers.CharField())

    @extend_schema(responses=OutputSerializer)
    def get(self, request):
        return Response(
            {"username": request.user.get_username(), "roles": sorted(user_roles(request.user))}
        )


class PasswordChangeView(auth_views.PasswordChangeView):
    """Change one's own password (ASVS 2.1.5, 2.1.6): Django's page, which asks for the current
    password and checks the new one with AUTH_PASSWORD_VALIDATORS; the session stays logged in
    (Django updates its hash) and every other session of the user ends with the old password."""

    template_name = "registration/password_change.html"
    success_url = reverse_lazy("home")

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, "Your password is changed.")
        return response

    def form_invalid(self, form):
        return self.render_to_response(self.get_context_data(form=form), status=400)


class LoginView(auth_views.LoginView):
    """Django's login page, throttled per username and per address (see login_throttle)."""

    def post(self, request, *args, **kwargs):
        wait = login_lock_remaining(
            username=request.POST.get("username", ""), ip=client_ip(request)
        )
        if wait:
            # An unbound form: a bound one would check the password when the page shows errors.
            form = self.get_form_class()(request)
            context = self.get_context_data(form=form, locked_seconds=wait)
            return self.render_to_response(context, status=429)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        if form.non_field_errors():
            login_failure_record(username=form.data.get("username", ""), ip=client_ip(self.request))
        return super().form_invalid(form)

    def form_valid(self, form):
        login_success_record(username=form.get_user().get_username())
        response = super().form_valid(form)
        session_clock_start(request=self.request)
        return response


def admin_login(request):
    """The admin site's login page, throttled like ours (it has its own view and form)."""
    if request.method != "POST":
        return admin.site.login(request)
    username = request.POST.get("username", "")
    ip = client_ip(request)
    wait = login_lock_remaining(username=username, ip=ip)
    if wait:
        return HttpResponse(
            f"{LOCKED_MESSAGE} Try again in {wait} seconds.",
            status=429,
            content_type="text/plain; charset=utf-8",
        )
    response = admin.site.login(request)
    # The admin answers a login with a redirect and a refusal with the form again.
    if response.status_code == 302:
        login_success_record(username=username)
        session_clock_start(request=request)
    else:
        login_failure_record(username=username, ip=ip)
    return response


class TokenObtainApi(APIView):
    """Exchange a username and password for an API token (the same one until it expires).

    429 after too many failed logins for the username or the address, even with the right
    password, until the lockout ends.
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema_serializer(component_name="TokenObtainInput")
    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=4096, trim_whitespace=False)

    @extend_schema_serializer(component_name="TokenObtainOutput")
    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()
        expires_at = serializers.DateTimeField()

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer, 429: ErrorSerializer})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        username = data.validated_data["username"]
        ip = client_ip(request)
        wait = login_lock_remaining(username=username, ip=ip)
        if wait:
            raise exceptions.Throttled(wait=wait, detail=LOCKED_MESSAGE)
        user = authenticate(
            request=request, username=username, password=data.validated_data["password"]
        )
        if user is None:
            login_failure_record(username=username, ip=ip)
            raise exceptions.ValidationError(
                {"non_field_errors": ["Unable to log in with provided credentials."]}
            )
        login_success_record(username=username)
        token = services.token_issue(user=user)
        return Response(
            self.OutputSerializer(
                {"token": token.key, "expires_at": services.token_expires_at(token)}
            ).data
        )


class TokenRevokeApi(APIView):
    """Revoke the caller's API token (sessions stay logged in). 204, also when none was held."""

    @extend_schema(request=None, responses={204: None})
    def post(self, request):
        services.token_revoke(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class PasswordSetView(auth_views.PasswordResetConfirmView):
    """A new account's one-time set-password page (``services.password_set_path``): Django's
    reset confirmation, which checks the token and, once the password is set, sends the user to
    log in. The token is bound to the password, so a used link answers as an expired one."""

    template_name = "registration/password_set.html"
    success_url = reverse_lazy("login")

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, "Your password is set: log in with it.")
        return response

    def form_invalid(self, form):
        return self.render_to_response(self.get_context_data(form=form), status=400)
