from django.urls import path, re_path

from annotation import views

urlpatterns = [
    path("rate/", views.rater_home, name="rater-home"),
    path("rate/<id:pk>/", views.rate, name="rate"),
    path("rate/media/<str:token>/<id:position>/<str:part>", views.rate_media, name="rate-media"),
    path("campaigns/", views.campaign_list, name="campaign-list"),
    path("campaigns/new/", views.campaign_create, name="campaign-create"),
    path("campaigns/<id:pk>/", views.campaign_detail, name="campaign-detail"),
    path("campaigns/<id:pk>/edit/", views.campaign_edit, name="campaign-edit"),
    path(
        "campaigns/<id:pk>/items/",
        views.campaign_items_from_selection,
        name="campaign-items-from-selection",
    ),
    # Only the actions, so that campaigns/<pk>/raters/ (annotation.quality.urls) is not caught.
    re_path(
        r"^campaigns/(?P<pk>[0-9]+)/(?P<action>start|pause|close)/$",
        views.campaign_action,
        name="campaign-action",
    ),
]
