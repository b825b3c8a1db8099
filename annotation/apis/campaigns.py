"""Campaign API for curators and engineers: create, edit, start, pause, close, add items, read
progress. One class per operation."""

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import selectors
from annotation.models import (
    Campaign,
    CampaignKind,
    ItemLoad,
    Preset,
    RaterPrompt,
)
from annotation.schema import PRESETS, preset_questions
from annotation.services.campaigns import (
    campaign_close,
    campaign_create,
    campaign_pause,
    campaign_start,
    campaign_update,
)
from annotation.services.item_loads import item_load_request, too_large_for_a_request
from annotation.services.items import campaign_items_add, campaign_items_from_selection
from generation.models import Candidate, CandidateKind
from stickerloop.roles import IsCuratorOrEngineer


class CampaignOutput(serializers.ModelSerializer):
    item_count = serializers.IntegerField(read_only=True)
    rater_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Campaign
        fields = [
            "id",
            "name",
            "kind",
            "status",
            "preset",
            "presets",
            "question_schema",
            "guidelines",
            "good_examples",
            "bad_examples",
            "overlap",
            "max_overlap",
            "lease_seconds",
            "gold_rate",
            "rater_prompt",
            "selection",
            "created_by",
            "created_at",
            "started_at",
            "closed_at",
            "item_count",
            "rater_count",
        ]


def _campaign_output(campaign: Campaign) -> dict:
    """The campaign as the list shows it, with its item and rater counts (a service returns the
    row without them)."""
    return CampaignOutput(selectors.campaign_list().get(pk=campaign.pk)).data


class CampaignListApi(APIView):
    """Campaigns, newest first, with their item and rater counts."""

    permission_classes = [IsCuratorOrEngineer]

    @extend_schema(responses=CampaignOutput(many=True))
    def get(self, request):
        return Response(CampaignOutput(selectors.campaign_list(), many=True).data)


class CampaignDetailApi(APIView):
    permission_classes = [IsCuratorOrEngineer]

    @extend_schema(responses=CampaignOutput)
    def get(self, request, pk: int):
        return Response(CampaignOutput(get_object_or_404(selectors.campaign_list(), pk=pk)).data)


def _candidates_field(**kwargs):
    return serializers.PrimaryKeyRelatedField(
        queryset=Candidate.objects.all(), many=True, required=False, **kwargs
    )


def _presets_field():
    return serializers.ListField(
        child=serializers.CharField(max_length=32),
        required=False,
        max_length=len(Preset.values),
        help_text="Several presets whose questions the campaign asks together, in order "
        "(instead of preset or question_schema).",
    )


class CampaignCreateApi(APIView):
    """Create a draft campaign from a preset, several presets' questions combined, or a custom
    question schema."""

    permission_classes = [IsCuratorOrEngineer]

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        kind = serializers.ChoiceField(choices=CampaignKind.choices)
        preset = serializers.ChoiceField(choices=Preset.choices, required=False, allow_null=True)
        presets = _presets_field()
        question_schema = serializers.JSONField(required=False, allow_null=True)
        guidelines = serializers.CharField(required=False, allow_blank=True, default="")
        overlap = serializers.IntegerField(required=False, default=1)
        max_overlap = serializers.IntegerField(required=False, allow_null=True)
        lease_seconds = serializers.IntegerField(required=False, default=600)
        gold_rate = serializers.FloatField(required=False, default=0.0)
        rater_prompt = serializers.ChoiceField(
            choices=RaterPrompt.choices, required=False, default=RaterPrompt.RAW
        )
        raters = serializers.PrimaryKeyRelatedField(
            queryset=get_user_model().objects.all(), many=True, required=False
        )
        good_examples = _candidates_field()
        bad_examples = _candidates_field()

    @extend_schema(request=InputSerializer, responses={201: CampaignOutput})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        campaign = campaign_create(**data.validated_data, created_by=request.user)
        return Response(_campaign_output(campaign), status=status.HTTP_201_CREATED)


class CampaignUpdateApi(APIView):
    """Edit a draft campaign; once started only guidelines and examples change (else 409)."""

    permission_classes = [IsCuratorOrEngineer]

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200, required=False)
        preset = serializers.ChoiceField(choices=Preset.choices, required=False)
        presets = _presets_field()
        question_schema = serializers.JSONField(required=False)
        guidelines = serializers.CharField(required=False, allow_blank=True)
        overlap = serializers.IntegerField(required=False)
        max_overlap = serializers.IntegerField(required=False)
        lease_seconds = serializers.IntegerField(required=False)
        gold_rate = serializers.FloatField(required=False)
        rater_prompt = serializers.ChoiceField(choices=RaterPrompt.choices, required=False)
        good_examples = _candidates_field()
        bad_examples = _candidates_field()

    @extend_schema(request=InputSerializer, responses=CampaignOutput)
    def post(self, request, pk: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        campaign = campaign_update(campaign=campaign, **data.validated_data)
        return Response(_campaign_output(campaign))


class _CampaignActionApi(APIView):
    permission_classes = [IsCuratorOrEngineer]
    service = staticmethod(campaign_start)

    @extend_schema(request=None, responses=CampaignOutput)
    def post(self, request, pk: int):
        campaign = self.service(campaign=get_object_or_404(Campaign, pk=pk))
        return Response(_campaign_output(campaign))


class CampaignStartApi(_CampaignActionApi):
    """Open a draft or paused campaign to its raters (409 when closed or without items)."""

    service = staticmethod(campaign_start)


class CampaignPauseApi(_CampaignActionApi):
    """Stop handing out items; raters may still submit what they hold."""

    service = staticmethod(campaign_pause)


class CampaignCloseApi(_CampaignActionApi):
    """Close for good: leases are released, later submits answer 409."""

    service = staticmethod(campaign_close)


class CampaignItemsAddApi(APIView):
    """Add items from explicit groups of candidate ids (shuffled within each group, and created
    in a shuffled order, so item ids do not follow the groups)."""

    permission_classes = [IsCuratorOrEngineer]

    class InputSerializer(serializers.Serializer):
        candidate_groups = serializers.ListField(
            child=serializers.ListField(child=serializers.IntegerField(), allow_empty=False),
            allow_empty=False,
            max_length=10000,
        )
        seed = serializers.IntegerField(required=False, allow_null=True)
        gold_answers = serializers.ListField(
            child=serializers.JSONField(), required=False, allow_null=True
        )

        def validate_candidate_groups(self, groups):
            ids = {i for group in groups for i in group}
            found = Candidate.objects.in_bulk(ids)
            missing = sorted(ids - set(found))
            if missing:
                raise serializers.ValidationError(
                    f"Unknown candidate id(s): {', '.join(map(str, missing[:10]))}."
                )
            return [[found[i] for i in group] for group in groups]

    class OutputSerializer(serializers.Serializer):
        created = serializers.IntegerField()
        item_ids = serializers.ListField(child=serializers.IntegerField())

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request, pk: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        items = campaign_items_add(campaign=campaign, **data.validated_data)
        return Response(
            {"created": len(items), "item_ids": [i.pk for i in items]},
            status=status.HTTP_201_CREATED,
        )


class SelectionInput(serializers.Serializer):
    batches = serializers.ListField(child=serializers.IntegerField(), required=False, default=list)
    model_versions = serializers.ListField(
        child=serializers.IntegerField(), required=False, default=list
    )
    prompt_tags = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, default=list
    )
    candidate_kind = serializers.ChoiceField(
        choices=CandidateKind.choices, required=False, allow_null=True
    )
    group_size = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="Best-of-N (2 to 8) and set (2 to 12) campaigns: candidates per item.",
    )
    seed = serializers.IntegerField(required=False, allow_null=True)


class CampaignItemsFromSelectionApi(APIView):
    """Add items from a candidate selection (batches, model versions, prompt tags, kind) within
    the request. A selection of more than ``STICKERLOOP_CAMPAIGN_SYNC_MAX_ITEMS`` candidates is
    refused with 400: queue an item load for it (``items/load/``)."""

    permission_classes = [IsCuratorOrEngineer]

    @extend_schema(request=SelectionInput, responses={201: CampaignItemsAddApi.OutputSerializer})
    def post(self, request, pk: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        data = SelectionInput(data=request.data)
        data.is_valid(raise_exception=True)
        reason = too_large_for_a_request(campaign=campaign, **_selection_fields(data))
        if reason:
            raise ValidationError({"selection": [reason]})
        items = campaign_items_from_selection(campaign=campaign, **data.validated_data)
        # A single campaign's items come back as a lazy queryset: their ids are read as one
        # column rather than as model rows.
        item_ids = (
            list(items.values_list("pk", flat=True))
            if isinstance(items, QuerySet)
            else [i.pk for i in items]
        )
        return Response(
            {"created": len(item_ids), "item_ids": item_ids}, status=status.HTTP_201_CREATED
        )


def _selection_fields(data: SelectionInput) -> dict:
    """The validated selection without its seed, which only orders the items."""
    return {k: v for k, v in data.validated_data.items() if k != "seed"}


class ItemLoadOutput(serializers.ModelSerializer):
    class Meta:
        model = ItemLoad
        fields = [
            "id",
            "campaign",
            "status",
            "selection",
            "items_created",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        ]


class CampaignItemsLoadApi(APIView):
    """Queue a worker to add items from a candidate selection (202), for selections of any size
    up to the campaign's item limit. Poll the load for its status: ``succeeded`` with
    ``items_created``, or ``failed`` with an ``error`` saying why (nothing was added)."""

    permission_classes = [IsCuratorOrEngineer]

    @extend_schema(request=SelectionInput, responses={202: ItemLoadOutput})
    def post(self, request, pk: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        data = SelectionInput(data=request.data)
        data.is_valid(raise_exception=True)
        load = item_load_request(
            campaign=campaign, requested_by=request.user, **data.validated_data
        )
        url = reverse("api-campaign-item-load", args=[campaign.pk, load.pk])
        return Response(
            ItemLoadOutput(load).data,
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": request.build_absolute_uri(url)},
        )


class CampaignItemLoadListApi(APIView):
    """The campaign's item loads, newest first (the latest 100)."""

    permission_classes = [IsCuratorOrEngineer]

    @extend_schema(responses=ItemLoadOutput(many=True))
    def get(self, request, pk: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        return Response(ItemLoadOutput(selectors.item_loads(campaign.pk), many=True).data)


class CampaignItemLoadDetailApi(APIView):
    permission_classes = [IsCuratorOrEngineer]

    @extend_schema(responses=ItemLoadOutput)
    def get(self, request, pk: int, load: int):
        return Response(ItemLoadOutput(get_object_or_404(ItemLoad, pk=load, campaign_id=pk)).data)


class CampaignProgressApi(APIView):
    """Items done, judgments, skips, active raters and live leases of a campaign."""

    permission_classes = [IsCuratorOrEngineer]

    class OutputSerializer(serializers.Serializer):
        items = serializers.IntegerField()
        items_done = serializers.IntegerField()
        items_started = serializers.IntegerField()
        percent_done = serializers.FloatField()
        judgments = serializers.IntegerField()
        skips = serializers.IntegerField()
        gold_judgments = serializers.IntegerField()
        active_raters = serializers.IntegerField()
        live_leases = serializers.IntegerField()
        members = serializers.IntegerField()

    @extend_schema(responses=OutputSerializer)
    def get(self, request, pk: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        return Response(self.OutputSerializer(selectors.campaign_progress(campaign=campaign)).data)


class PresetListApi(APIView):
    """The question presets and the campaign kinds each one fits."""

    permission_classes = [IsCuratorOrEngineer]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):
        return Response(
            {
                name: {"kinds": preset["kinds"], "questions": preset_questions(name)}
                for name, preset in PRESETS.items()
            }
        )
