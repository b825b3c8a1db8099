from django.urls import path

from webhooks import apis

urlpatterns = [
    path("webhooks/events/", apis.EventTypeListApi.as_view(), name="api-webhook-event-types"),
    path("webhooks/endpoints/", apis.EndpointListApi.as_view(), name="api-webhook-endpoint-list"),
    path(
        "webhooks/endpoints/create/",
        apis.EndpointCreateApi.as_view(),
        name="api-webhook-endpoint-create",
    ),
    path(
        "webhooks/endpoints/<id:pk>/",
        apis.EndpointDetailApi.as_view(),
        name="api-webhook-endpoint-detail",
    ),
    path(
        "webhooks/endpoints/<id:pk>/update/",
        apis.EndpointUpdateApi.as_view(),
        name="api-webhook-endpoint-update",
    ),
    path(
        "webhooks/endpoints/<id:pk>/rotate-secret/",
        apis.EndpointRotateSecretApi.as_view(),
        name="api-webhook-endpoint-rotate-secret",
    ),
    path(
        "webhooks/endpoints/<id:pk>/enable/",
        apis.EndpointEnableApi.as_view(),
        name="api-webhook-endpoint-enable",
    ),
    path(
        "webhooks/endpoints/<id:pk>/disable/",
        apis.EndpointDisableApi.as_view(),
        name="api-webhook-endpoint-disable",
    ),
    path(
        "webhooks/endpoints/<id:pk>/delete/",
        apis.EndpointDeleteApi.as_view(),
        name="api-webhook-endpoint-delete",
    ),
    path(
        "webhooks/endpoints/<id:pk>/test/",
        apis.EndpointTestApi.as_view(),
        name="api-webhook-endpoint-test",
    ),
    path(
        "webhooks/endpoints/<id:pk>/deliveries/",
        apis.DeliveryListApi.as_view(),
        name="api-webhook-delivery-list",
    ),
    path(
        "webhooks/deliveries/<id:pk>/",
        apis.DeliveryDetailApi.as_view(),
        name="api-webhook-delivery-detail",
    ),
    path(
        "webhooks/deliveries/<id:pk>/redeliver/",
        apis.DeliveryRedeliverApi.as_view(),
        name="api-webhook-delivery-redeliver",
    ),
]
