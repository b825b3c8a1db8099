"""Webhook API for curators and ML engineers: one class per operation.

The secret appears in two answers only: registering an endpoint and rotating its secret.
"""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from stickerloop.roles import IsCuratorOrEngineer
from webhooks import payload, selectors
from webhooks.catalog import DESCRIPTIONS, SUBSCRIBABLE, EventType
from webhooks.models import Delivery, DeliveryAttempt, DeliveryStatus, Endpoint, Event
from webhooks.services.deliveries import delivery_redeliver
from webhooks.services.endpoints import (
    endpoint_create,
    endpoint_delete,
    endpoint_disable,
    endpoint_enable,
    endpoint_secret_rotate,
    endpoint_update,
)
from webhooks.services.events import endpoint_test_send


class WebhookEventOutput(serializers.ModelSerializer):
    type = serializers.ChoiceField(choices=EventType.choices)
    object_url = serializers.SerializerMethodField()

    class Meta:
        model = Event
        fields = [
            "event_id",
            "type",
            "object_type",
            "object_id",
            "object_url",
            "data",
            "occurred_at",
        ]

    def get_object_url(self, event: Event) -> str:
        return payload.object_url(event.object_type, event.object_id, event.data)


class WebhookDeliveryOutput(serializers.ModelSerializer):
    event = WebhookEventOutput(read_only=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "endpoint",
            "event",
            "status",
            "attempts",
            "next_attempt_at",
            "last_status_code",
            "last_error",
            "created_at",
            "finished_at",
        ]


class WebhookDeliveryAttemptOutput(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = [
            "number",
            "started_at",
            "finished_at",
            "status_code",
            "latency_ms",
            "response_excerpt",
            "error",
        ]


class WebhookDeliveryDetailOutput(WebhookDeliveryOutput):
    attempt_log = WebhookDeliveryAttemptOutput(many=True, read_only=True)

    class Meta(WebhookDeliveryOutput.Meta):
        fields = [*WebhookDeliveryOutput.Meta.fields, "attempt_log"]


class WebhookRecentDeliveryOutput(serializers.ModelSerializer):
    """A delivery as the endpoint list shows it at a glance."""

    event_type = serializers.CharField(source="event.type", read_only=True)

    class Meta:
        model = Delivery
        fields = ["id", "event_type", "status", "attempts", "last_status_code", "created_at"]


class WebhookEndpointOutput(serializers.ModelSerializer):
    events = serializers.ListField(child=serializers.ChoiceField(choices=SUBSCRIBABLE))
    previous_secret_expires_at = serializers.DateTimeField(read_only=True, allow_null=True)
    recent_deliveries = WebhookRecentDeliveryOutput(source="recent", many=True, read_only=True)

    class Meta:
        model = Endpoint
        fields = [
            "id",
            "url",
            "description",
            "events",
            "is_active",
            "consecutive_failures",
            "disabled_at",
            "disabled_reason",
            "previous_secret_expires_at",
            "created_by",
            "created_at",
            "updated_at",
            "recent_deliveries",
        ]


def _endpoint_output(endpoint: Endpoint) -> dict:
    return WebhookEndpointOutput(selectors.endpoint_list().get(pk=endpoint.pk)).data


class WebhookEndpointWithSecretOutput(WebhookEndpointOutput):
    """The endpoint with its secret: only the answers that make a secret."""

    secret = serializers.CharField(read_only=True)

    class Meta(WebhookEndpointOutput.Meta):
        fields = [*WebhookEndpointOutput.Meta.fields, "secret"]


def _with_secret(endpoint: Endpoint, secret: str) -> dict:
    endpoint = selectors.endpoint_list().get(pk=endpoint.pk)
    endpoint.secret = secret
    return WebhookEndpointWithSecretOutput(endpoint).data


class EventTypeListApi(APIView):
    """The event types an endpoint can subscribe to, with what each means."""

    permission_classes = [IsCuratorOrEngineer]

    class OutputSerializer(serializers.Serializer):
        type = serializers.CharField()
        label = serializers.CharField()
        description = serializers.CharField()

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request):
        rows = [
            {"type": value, "label": EventType(value).label, "description": DESCRIPTIONS[value]}
            for value in SUBSCRIBABLE
        ]
        return Response(self.OutputSerializer(rows, many=True).data)


class EndpointListApi(generics.ListAPIView):
    """Endpoints, newest first, each with its last ten deliveries."""

    permission_classes = [IsCuratorOrEngineer]
    serializer_class = WebhookEndpointOutput

    def get_queryset(self):
        return selectors.endpoint_list()


class EndpointDetailApi(APIView):
    permission_classes = [IsCuratorOrEngineer]

    @extend_schema(responses=WebhookEndpointOutput)
    def get(self, request, pk: int):
        return Response(
            WebhookEndpointOutput(get_object_or_404(selectors.endpoint_list(), pk=pk)).data
        )


class EndpointCreateApi(APIView):
    """Register an endpoint. The answer holds its ``secret``, which no later answer shows: keep
    it to verify the ``Stickerloop-Signature`` header. The URL must be http(s) and resolve to
    public addresses only (unless ``STICKERLOOP_WEBHOOK_ALLOW_PRIVATE`` is set)."""

    permission_classes = [IsCuratorOrEngineer]

    class InputSerializer(serializers.Serializer):
        url = serializers.CharField(max_length=2000)
        events = serializers.ListField(child=serializers.CharField(max_length=64), max_length=50)
        description = serializers.CharField(
            max_length=200, required=False, allow_blank=True, default=""
        )

    @extend_schema(request=InputSerializer, responses={201: WebhookEndpointWithSecretOutput})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint, secret = endpoint_create(**data.validated_data, created_by=request.user)
        return Response(_with_secret(endpoint, secret), status=status.HTTP_201_CREATED)


class EndpointUpdateApi(APIView):
    """Change an endpoint's URL, events or description (what is given)."""

    permission_classes = [IsCuratorOrEngineer]

    class InputSerializer(serializers.Serializer):
        url = serializers.CharField(max_length=2000, required=False)
        events = serializers.ListField(
            child=serializers.CharField(max_length=64), max_length=50, required=False
        )
        description = serializers.CharField(max_length=200, required=False, allow_blank=True)

    @extend_schema(request=InputSerializer, responses=WebhookEndpointOutput)
    def post(self, request, pk: int):
        endpoint = get_object_or_404(Endpoint, pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint = endpoint_update(endpoint=endpoint, **data.validated_data)
        return Response(_endpoint_output(endpoint))


class EndpointRotateSecretApi(APIView):
    """Give the endpoint a new secret (in the answer, this once). For ``overlap_hours``
    (default ``STICKERLOOP_WEBHOOK_SECRET_OVERLAP_HOURS``) the old secret signs too."""

    permission_classes = [IsCuratorOrEngineer]

    class InputSerializer(serializers.Serializer):
        overlap_hours = serializers.IntegerField(required=False, allow_null=True, default=None)

    @extend_schema(request=InputSerializer, responses=WebhookEndpointWithSecretOutput)
    def post(self, request, pk: int):
        endpoint = get_object_or_404(Endpoint, pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint, secret = endpoint_secret_rotate(
            endpoint=endpoint, overlap_hours=data.validated_data["overlap_hours"]
        )
        return Response(_with_secret(endpoint, secret))


class _EndpointActionApi(APIView):
    permission_classes = [IsCuratorOrEngineer]

    def act(self, request, endpoint: Endpoint) -> Endpoint:
        raise NotImplementedError

    @extend_schema(request=None, responses=WebhookEndpointOutput)
    def post(self, request, pk: int):
        endpoint = self.act(request, get_object_or_404(Endpoint, pk=pk))
        return Response(_endpoint_output(endpoint))


class EndpointEnableApi(_EndpointActionApi):
    """Deliver again to a disabled endpoint, with a clean failure count (409 when enabled)."""

    def act(self, request, endpoint):
        return endpoint_enable(endpoint=endpoint)


class EndpointDisableApi(_EndpointActionApi):
    """Stop delivering to the endpoint (409 when disabled already)."""

    def act(self, request, endpoint):
        return endpoint_disable(endpoint=endpoint, disabled_by=request.user)


class EndpointDeleteApi(APIView):
    """Delete the endpoint with its delivery log."""

    permission_classes = [IsCuratorOrEngineer]

    @extend_schema(request=None, responses={204: None})
    def post(self, request, pk: int):
        endpoint_delete(endpoint=get_object_or_404(Endpoint, pk=pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndpointTestApi(APIView):
    """Queue a ``webhook.test`` event to this endpoint alone (one attempt, no retries); follow
    it in its delivery (409 when the endpoint is disabled)."""

    permission_classes = [IsCuratorOrEngineer]

    @extend_schema(request=None, responses={202: WebhookDeliveryOutput})
    def post(self, request, pk: int):
        delivery = endpoint_test_send(endpoint=get_object_or_404(Endpoint, pk=pk))
        delivery = selectors.delivery_detail().get(pk=delivery.pk)
        return Response(WebhookDeliveryOutput(delivery).data, status=status.HTTP_202_ACCEPTED)


class DeliveryListApi(generics.ListAPIView):
    """The endpoint's deliveries, newest first (``?status=``)."""

    permission_classes = [IsCuratorOrEngineer]
    serializer_class = WebhookDeliveryOutput

    @extend_schema(
        parameters=[OpenApiParameter("status", str, enum=DeliveryStatus.values, required=False)]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        endpoint = get_object_or_404(Endpoint, pk=self.kwargs["pk"])
        wanted = self.request.query_params.get("status") or None
        if wanted is not None and wanted not in DeliveryStatus.values:
            raise serializers.ValidationError(
                {"status": [f"Must be one of {', '.join(DeliveryStatus.values)}."]}
            )
        return selectors.delivery_list(endpoint=endpoint, status=wanted)


class DeliveryDetailApi(APIView):
    """A delivery with its event and the log of its attempts."""

    permission_classes = [IsCuratorOrEngineer]

    @extend_schema(responses=WebhookDeliveryDetailOutput)
    def get(self, request, pk: int):
        delivery = get_object_or_404(selectors.delivery_detail(), pk=pk)
        return Response(WebhookDeliveryDetailOutput(delivery).data)


class DeliveryRedeliverApi(APIView):
    """Send a finished delivery again: the same event id and body, a new retry window (409
    while it is still being sent or when its endpoint is disabled)."""

    permission_classes = [IsCuratorOrEngineer]

    @extend_schema(request=None, responses={202: WebhookDeliveryOutput})
    def post(self, request, pk: int):
        delivery = delivery_redeliver(delivery=get_object_or_404(Delivery, pk=pk))
        delivery = selectors.delivery_detail().get(pk=delivery.pk)
        return Response(WebhookDeliveryOutput(delivery).data, status=status.HTTP_202_ACCEPTED)
