"""A campaign's quality policy: read by curators and engineers, set by curators."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import Campaign
from annotation.quality import selectors
from annotation.quality.models import QualityPolicy
from annotation.quality.services.policy import quality_policy_set
from stickerloop.roles import IsCurator, IsCuratorOrEngineer


class PolicyOutput(serializers.ModelSerializer):
    class Meta:
        model = QualityPolicy
        fields = [
            "auto_pause",
            "min_gold_judgments",
            "min_gold_accuracy",
            "min_consensus_agreement",
            "min_consensus_judgments",
            "speed_floor_seconds",
            "max_fast_share",
            "min_speed_judgments",
            "consensus_method",
            "confidence_target",
            "qualification_campaign",
            "qualification_min_gold",
            "qualification_min_accuracy",
        ]


class PolicyApi(APIView):
    """A campaign's quality thresholds: read (curators, engineers), change (curators)."""

    def get_permissions(self):
        return [IsCuratorOrEngineer()] if self.request.method == "GET" else [IsCurator()]

    @extend_schema_serializer(component_name="QualityPolicyInput")
    class InputSerializer(serializers.Serializer):
        # Types only: ranges are checked by the service, which names the field and the range.
        auto_pause = serializers.BooleanField(required=False)
        min_gold_judgments = serializers.IntegerField(required=False)
        min_gold_accuracy = serializers.FloatField(required=False)
        min_consensus_agreement = serializers.FloatField(
            required=False,
            allow_null=True,
            help_text="Pause below this agreement with the other raters (0..1); null: no check.",
        )
        min_consensus_judgments = serializers.IntegerField(required=False)
        speed_floor_seconds = serializers.FloatField(required=False)
        max_fast_share = serializers.FloatField(required=False)
        min_speed_judgments = serializers.IntegerField(required=False)
        consensus_method = serializers.CharField(required=False)
        confidence_target = serializers.FloatField(required=False)
        qualification_campaign = serializers.PrimaryKeyRelatedField(
            queryset=Campaign.objects.all(), required=False, allow_null=True
        )
        qualification_min_gold = serializers.IntegerField(required=False)
        qualification_min_accuracy = serializers.FloatField(required=False)

    @extend_schema(responses=PolicyOutput)
    def get(self, request, pk: int):
        return Response(PolicyOutput(selectors.policy_for(get_object_or_404(Campaign, pk=pk))).data)

    @extend_schema(request=InputSerializer, responses=PolicyOutput)
    def patch(self, request, pk: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        policy = quality_policy_set(campaign=campaign, **data.validated_data)
        return Response(PolicyOutput(policy).data)
