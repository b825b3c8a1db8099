from django.urls import path

from webhooks import views

urlpatterns = [
    path("webhooks/", views.endpoint_list, name="webhook-endpoint-list"),
    path("webhooks/new/", views.endpoint_create, name="webhook-endpoint-create"),
    path("webhooks/<id:pk>/", views.endpoint_detail, name="webhook-endpoint-detail"),
    path("webhooks/<id:pk>/<str:action>/", views.endpoint_action, name="webhook-endpoint-action"),
    path("webhooks/deliveries/<id:pk>/", views.delivery_detail, name="webhook-delivery-detail"),
    path(
        "webhooks/deliveries/<id:pk>/redeliver/",
        views.delivery_redeliver,
        name="webhook-delivery-redeliver",
    ),
]
