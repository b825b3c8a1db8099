from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from stickerloop import media, views
from stickerloop.home import views as home_views
from stickerloop.metrics import views as metrics_views

api_patterns = [
    path("", include("generation.urls_api")),
    path("", include("annotation.urls_api")),
    path("", include("annotation.quality.urls_api")),
    path("", include("training_bridge.urls_api")),
    path("", include("training_bridge.jobs.urls_api")),
    path("", include("training_bridge.experiments.urls_api")),
    path("", include("training_bridge.pipelines.urls_api")),
    path("", include("webhooks.urls_api")),
    path("auth/token/", views.TokenObtainApi.as_view(), name="api-token"),
    path("auth/token/revoke/", views.TokenRevokeApi.as_view(), name="api-token-revoke"),
    path("me/", views.MeApi.as_view(), name="api-me"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
]

urlpatterns = [
    path("", home_views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", metrics_views.metrics_scrape, name="metrics"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/password/", views.PasswordChangeView.as_view(), name="password-change"),
    path(
        "account/password/<uidb64>/<token>/", views.PasswordSetView.as_view(), name="password-set"
    ),
    path("admin/login/", views.admin_login, name="admin-login"),
    path("admin/", admin.site.urls),
    path("api/", include(api_patterns)),
    path("media/<path:key>", media.media_serve, name="media"),
    path("", include("generation.urls")),
    path("", include("annotation.urls")),
    path("", include("annotation.quality.urls")),
    path("", include("training_bridge.urls")),
    path("", include("training_bridge.jobs.urls")),
    path("", include("training_bridge.experiments.urls")),
    path("", include("training_bridge.pipelines.urls")),
    path("", include("webhooks.urls")),
]

handler400 = views.bad_request
handler404 = views.not_found
# 403 and 500 are Django's own handlers, which render templates/403.html and 500.html.
