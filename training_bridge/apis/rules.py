"""Dataset rule API: list, detail, create, update and preview."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import Campaign
from stickerloop.roles import IsCurator, IsCuratorOrEngineer
from stickerloop.schema import ValidationErrorSerializer
from training_bridge import selectors
from training_bridge.models import (
    CaptionSource,
    DatasetKind,
    DatasetPurpose,
    DatasetRule,
    WeakSource,
)
from training_bridge.rules import (
    RULE_FIELDS,
    dataset_rule_create,
    dataset_rule_update,
    rule_spec_check,
    rule_values,
)


class RuleInput(serializers.Serializer):
    """Rule settings. Thresholds are checked against the campaigns' question schemas by the
    service, which names the offending condition field (``conditions.0.min_mean``)."""

    name = serializers.CharField(max_length=200)
    purpose = serializers.ChoiceField(choices=DatasetPurpose.choices)
    kind = serializers.ChoiceField(choices=DatasetKind.choices, required=False, allow_null=True)
    description = serializers.CharField(required=False, allow_blank=True)
    campaigns = serializers.PrimaryKeyRelatedField(
        queryset=Campaign.objects.all(), many=True, required=False
    )
    weak_sources = serializers.PrimaryKeyRelatedField(
        queryset=WeakSource.objects.all(), many=True, required=False
    )
    consensus_method = serializers.CharField(required=False, max_length=16)
    conditions = serializers.JSONField(
        required=False,
        help_text='All must hold. On answers: {"question": key, "labels": [accepted consensus '
        'labels], "min_confidence": x, "min_mean": y, "max_mean": z}. On picks (a best-of-N '
        'pick question or a pair question): {"question": key, "min_agreement": share 0..1, '
        '"min_judgments": n (default 1)} keeps the candidate that won its item, by at least '
        "that share of the item's judgments; a tie for the top keeps none.",
    )
    min_judgments = serializers.IntegerField(required=False)
    exclude_gold = serializers.BooleanField(required=False)
    exclude_paused_only = serializers.BooleanField(required=False)
    min_motion_score = serializers.FloatField(required=False, allow_null=True)
    weak_label_filters = serializers.JSONField(required=False)
    motion_buckets = serializers.JSONField(required=False)
    exclude_held_out = serializers.BooleanField(required=False)
    per_prompt_cap = serializers.IntegerField(required=False, allow_null=True)
    dedup_max_distance = serializers.IntegerField(required=False, allow_null=True)
    validation_fraction = serializers.FloatField(required=False)
    split_seed = serializers.IntegerField(required=False, min_value=0)
    caption_source = serializers.ChoiceField(choices=CaptionSource.choices, required=False)
    caption_template = serializers.CharField(required=False, allow_blank=True, max_length=500)
    training_trigger = serializers.JSONField(required=False, allow_null=True)


class RuleOutput(serializers.ModelSerializer):
    campaigns = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    weak_sources = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    version_count = serializers.SerializerMethodField()

    class Meta:
        model = DatasetRule
        fields = [
            "id",
            *RULE_FIELDS,
            "campaigns",
            "weak_sources",
            "version_count",
            "created_at",
            "updated_at",
        ]

    def get_version_count(self, obj: DatasetRule) -> int:
        count = getattr(obj, "version_count", None)
        return count if count is not None else obj.versions.count()


class RuleListApi(generics.ListAPIView):
    """Dataset rules, newest first (curators and engineers)."""

    permission_classes = [IsCuratorOrEngineer]
    serializer_class = RuleOutput

    def get_queryset(self):
        return selectors.dataset_rule_list()


class RuleDetailApi(generics.RetrieveAPIView):
    permission_classes = [IsCuratorOrEngineer]
    serializer_class = RuleOutput

    def get_queryset(self):
        return selectors.dataset_rule_list()


class RuleCreateApi(APIView):
    """Create a rule (curators). Bad settings answer 400 naming the field; nothing is stored."""

    permission_classes = [IsCurator]

    @extend_schema(request=RuleInput, responses={201: RuleOutput})
    def post(self, request):
        data = RuleInput(data=request.data)
        data.is_valid(raise_exception=True)
        rule = dataset_rule_create(values=data.validated_data, created_by=request.user)
        return Response(RuleOutput(rule).data, status=status.HTTP_201_CREATED)


class RuleUpdateApi(APIView):
    """Change some of a rule's settings (curators); built versions keep theirs."""

    permission_classes = [IsCurator]

    @extend_schema(request=RuleInput, responses=RuleOutput)
    def post(self, request, pk: int):
        rule = get_object_or_404(DatasetRule, pk=pk)
        data = RuleInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        rule = dataset_rule_update(rule=rule, changes=data.validated_data)
        return Response(RuleOutput(rule).data)


class StageOutput(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()
    kept = serializers.IntegerField()
    dropped = serializers.IntegerField()


class PreviewOutput(serializers.Serializer):
    stages = StageOutput(many=True)
    entry_count = serializers.IntegerField()
    train_count = serializers.IntegerField()
    validation_count = serializers.IntegerField()
    prompt_count = serializers.IntegerField()
    sample = serializers.ListField(child=serializers.DictField())
    dropped_samples = serializers.ListField(child=serializers.DictField())


class RulePreviewApi(APIView):
    """What building the saved rule now would keep and drop, condition by condition."""

    permission_classes = [IsCuratorOrEngineer]

    @extend_schema(responses={200: PreviewOutput, 400: ValidationErrorSerializer})
    def get(self, request, pk: int):
        rule = get_object_or_404(DatasetRule, pk=pk)
        spec = rule_spec_check(values=rule_values(rule))
        return Response(PreviewOutput(selectors.dataset_rule_preview(spec=spec)).data)


class RuleDraftPreviewApi(APIView):
    """Preview unsaved rule settings (the same input as create, without saving anything)."""

    permission_classes = [IsCuratorOrEngineer]

    class InputSerializer(RuleInput):
        class Meta:
            ref_name = "RuleDraftPreviewInput"  # unique schema component name

        name = serializers.CharField(max_length=200, required=False)

    @extend_schema(request=InputSerializer, responses=PreviewOutput)
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        spec = rule_spec_check(values=data.validated_data)
        return Response(PreviewOutput(selectors.dataset_rule_preview(spec=spec)).data)
