"""Rater membership: add, pause and resume raters, for curators. Every endpoint goes through
``annotation.quality.services.membership``."""

from django.contrib.auth import get_user_model
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import Campaign, CampaignMembership, MembershipStatus
from annotation.quality.services.membership import (
    MAX_REASON,
    campaign_membership_set,
    rater_pause,
    rater_resume,
)
from stickerloop.roles import IsCurator

EXCLUDE_HELP = (
    "On a pause: true (the default) stops counting the rater's judgments since their last resume "
    "(all of them if they were never resumed) and frees those items for other raters; a resume "
    "counts them again. False keeps them counting. The same field and default on every endpoint "
    "that pauses a rater."
)


class EventOutput(serializers.Serializer):
    action = serializers.CharField()
    cause = serializers.CharField()
    reason = serializers.CharField()
    excluded_judgments = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class PauseInput(serializers.Serializer):
    """What a pause takes, alike from the pause endpoint and the campaign's raters endpoint."""

    reason = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=MAX_REASON,
        help_text="Why the rater is paused (needed) or resumed (optional).",
    )
    exclude = serializers.BooleanField(default=True, help_text=EXCLUDE_HELP)


class RaterPauseApi(APIView):
    """Pause a rater in the campaign; with ``exclude`` (default) their judgments since their
    last resume stop counting."""

    permission_classes = [IsCurator]

    @extend_schema_serializer(component_name="QualityRaterPauseInput")
    class InputSerializer(PauseInput):
        pass

    @extend_schema(request=InputSerializer, responses=EventOutput)
    def post(self, request, pk: int, rater_id: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        get_object_or_404(get_user_model(), pk=rater_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        event = rater_pause(
            campaign=campaign, rater_id=rater_id, actor=request.user, **data.validated_data
        )
        return Response(EventOutput(event).data)


class RaterResumeApi(APIView):
    """Resume a paused rater; the judgments their pause excluded count again."""

    permission_classes = [IsCurator]

    @extend_schema_serializer(component_name="QualityRaterResumeInput")
    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(
            required=False, allow_blank=True, default="", max_length=MAX_REASON
        )

    @extend_schema(request=InputSerializer, responses=EventOutput)
    def post(self, request, pk: int, rater_id: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        get_object_or_404(get_user_model(), pk=rater_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        event = rater_resume(
            campaign=campaign,
            rater_id=rater_id,
            actor=request.user,
            reason=data.validated_data["reason"],
        )
        return Response(EventOutput(event).data)


class CampaignMembershipSetApi(APIView):
    """Add a rater to a campaign, or pause (with a reason) or resume them, by the same rules as
    the pause and resume endpoints: a pause takes the same ``exclude`` with the same default,
    and a rater who failed the qualification stays paused (409)."""

    permission_classes = [IsCurator]

    @extend_schema_serializer(component_name="CampaignMembershipSetInput")
    class InputSerializer(PauseInput):
        rater = serializers.SlugRelatedField(
            slug_field="username", queryset=get_user_model().objects.all()
        )
        status = serializers.ChoiceField(
            choices=MembershipStatus.choices, required=False, default=MembershipStatus.ACTIVE
        )

    @extend_schema_serializer(component_name="CampaignMembershipSetOutput")
    class OutputSerializer(serializers.ModelSerializer):
        rater = serializers.SlugRelatedField(slug_field="username", read_only=True)

        class Meta:
            model = CampaignMembership
            fields = ["id", "campaign", "rater", "status", "paused_reason", "paused_at"]

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request, pk: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = campaign_membership_set(
            campaign=campaign, actor=request.user, **data.validated_data
        )
        return Response(self.OutputSerializer(membership).data)
