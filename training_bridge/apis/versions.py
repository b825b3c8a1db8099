"""Dataset version API: build from a rule, list, detail, manifest entries, retire and diff.
(Publishing is the training side's: ``training_bridge.jobs.apis``.)"""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from stickerloop.api import IdFilter
from stickerloop.media import media_url
from stickerloop.roles import IsCurator, IsCuratorOrEngineer
from stickerloop.schema import ValidationErrorSerializer
from training_bridge import selectors
from training_bridge.models import (
    DatasetEntry,
    DatasetKind,
    DatasetPurpose,
    DatasetRule,
    DatasetVersion,
    TrainingTrigger,
    VersionStatus,
)
from training_bridge.versions import (
    dataset_version_build,
    dataset_version_retire,
)


class TriggerOutput(serializers.ModelSerializer):
    class Meta:
        model = TrainingTrigger
        fields = ["id", "origin", "status", "trigger", "job_id", "error", "created_at", "fired_at"]


class VersionOutput(serializers.ModelSerializer):
    rule_name = serializers.CharField(source="rule.name", read_only=True)
    built_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    published_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    training_trigger = serializers.SerializerMethodField()

    class Meta:
        model = DatasetVersion
        fields = [
            "id",
            "rule",
            "rule_name",
            "number",
            "purpose",
            "kind",
            "status",
            "manifest_sha256",
            "entry_count",
            "train_count",
            "validation_count",
            "stage_counts",
            "rule_snapshot",
            "built_by",
            "created_at",
            "published_at",
            "published_by",
            "retired_at",
            "training_trigger",
        ]

    def get_training_trigger(self, obj: DatasetVersion) -> dict | None:
        trigger = selectors.rule_trigger(obj)
        return None if trigger is None else TriggerOutput(trigger).data


class RuleBuildApi(APIView):
    """Build a version from the rule's current settings and judgments (curators).

    201 with the new version; 200 with the existing one when a live version of the rule already
    has the same manifest checksum. A rule that selects nothing answers 400; nothing is stored.
    """

    permission_classes = [IsCurator]

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "RuleBuildOutput"  # unique schema component name

        created = serializers.BooleanField()
        version = VersionOutput()

    @extend_schema(request=None, responses={201: OutputSerializer, 200: OutputSerializer})
    def post(self, request, pk: int):
        rule = get_object_or_404(DatasetRule, pk=pk)
        version, created = dataset_version_build(rule=rule, built_by=request.user)
        return Response(
            self.OutputSerializer({"created": created, "version": version}).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class VersionListApi(generics.ListAPIView):
    """Dataset versions, newest first; filter by rule, purpose, status, kind."""

    permission_classes = [IsCuratorOrEngineer]
    serializer_class = VersionOutput

    class FilterSerializer(serializers.Serializer):
        rule = IdFilter()
        purpose = serializers.ChoiceField(choices=DatasetPurpose.choices, required=False)
        status = serializers.ChoiceField(choices=VersionStatus.choices, required=False)
        kind = serializers.ChoiceField(choices=DatasetKind.choices, required=False)

    @extend_schema(
        parameters=[
            OpenApiParameter(n, type=t)
            for n, t in [("rule", int), ("purpose", str), ("status", str), ("kind", str)]
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        filters = self.FilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return selectors.dataset_version_list(**filters.validated_data)


class VersionDetailApi(generics.RetrieveAPIView):
    permission_classes = [IsCuratorOrEngineer]
    serializer_class = VersionOutput

    def get_queryset(self):
        return selectors.dataset_version_list()


class EntryOutput(serializers.ModelSerializer):
    file_url = serializers.SerializerMethodField()

    class Meta:
        model = DatasetEntry
        fields = [
            "position",
            "candidate",
            "split",
            "caption",
            "file_key",
            "file_url",
            "file_sha256",
            "label",
            "confidence",
            "labels",
            "confidences",
            "scores",
            "n_judgments",
            "model_version_name",
            "seed",
            "prompt_text",
            "teacher",
            "source_candidate",
            "frames_prefix",
            "frame_count",
            "motion_score",
        ]

    def get_file_url(self, obj: DatasetEntry) -> str:
        return media_url(obj.file_key)


class VersionEntriesApi(generics.ListAPIView):
    """A version's manifest rows in order (``?split=train|validation``)."""

    permission_classes = [IsCuratorOrEngineer]
    serializer_class = EntryOutput

    @extend_schema(parameters=[OpenApiParameter("split", str)])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        version = get_object_or_404(DatasetVersion, pk=self.kwargs["pk"])
        split = self.request.query_params.get("split")
        if split not in (None, "", "train", "validation"):
            raise serializers.ValidationError({"split": "Use train or validation."})
        return selectors.dataset_version_entries(version=version, split=split or None)


class VersionRetireApi(APIView):
    permission_classes = [IsCurator]

    @extend_schema(request=None, responses=VersionOutput)
    def post(self, request, pk: int):
        version = get_object_or_404(DatasetVersion, pk=pk)
        version = dataset_version_retire(version=version, retired_by=request.user)
        return Response(VersionOutput(version).data)


class VersionDiffApi(APIView):
    """Entries added, removed and changed from version ``pk`` to version ``other``."""

    permission_classes = [IsCuratorOrEngineer]

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "VersionDiffOutput"  # unique schema component name

        old = serializers.IntegerField(source="old.pk")
        new = serializers.IntegerField(source="new.pk")
        added_count = serializers.IntegerField()
        removed_count = serializers.IntegerField()
        changed_count = serializers.IntegerField()
        unchanged_count = serializers.IntegerField()
        added = serializers.ListField(child=serializers.IntegerField())
        removed = serializers.ListField(child=serializers.IntegerField())
        changed = serializers.ListField(child=serializers.DictField())

    @extend_schema(responses={200: OutputSerializer, 400: ValidationErrorSerializer})
    def get(self, request, pk: int, other: int):
        old = get_object_or_404(DatasetVersion, pk=pk)
        new = get_object_or_404(DatasetVersion, pk=other)
        diff = selectors.dataset_version_diff(old=old, new=new)
        return Response(self.OutputSerializer(diff).data)
