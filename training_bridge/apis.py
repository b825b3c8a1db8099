"""Curation API: one class per operation, nested input and output serializers."""

import mimetypes

from django.core.files.storage import default_storage
from django.http import FileResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import Campaign
from stickerloop.media import media_url
from stickerloop.roles import IsCurator, IsCuratorOrEngineer
from training_bridge import selectors, services
from training_bridge.models import (
    AuditEvent,
    CaptionSource,
    DatasetEntry,
    DatasetExport,
    DatasetKind,
    DatasetPurpose,
    DatasetRule,
    DatasetVersion,
    ExportFormat,
    ImportFormat,
    TrainingTrigger,
    VersionStatus,
    WeakImport,
    WeakSource,
)
from training_bridge.rules import rule_spec_check, rule_values

# Rules -------------------------------------------------------------------------------------------


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
    conditions = serializers.JSONField(required=False)
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
            "name",
            "purpose",
            "kind",
            "description",
            "campaigns",
            "weak_sources",
            "consensus_method",
            "conditions",
            "min_judgments",
            "exclude_gold",
            "exclude_paused_only",
            "min_motion_score",
            "weak_label_filters",
            "motion_buckets",
            "exclude_held_out",
            "per_prompt_cap",
            "dedup_max_distance",
            "validation_fraction",
            "split_seed",
            "caption_source",
            "caption_template",
            "training_trigger",
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
        rule = services.dataset_rule_create(values=data.validated_data, created_by=request.user)
        return Response(RuleOutput(rule).data, status=status.HTTP_201_CREATED)


class RuleUpdateApi(APIView):
    """Change some of a rule's settings (curators); built versions keep theirs."""

    permission_classes = [IsCurator]

    @extend_schema(request=RuleInput, responses=RuleOutput)
    def post(self, request, pk: int):
        rule = get_object_or_404(DatasetRule, pk=pk)
        data = RuleInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        rule = services.dataset_rule_update(rule=rule, changes=data.validated_data)
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

    @extend_schema(responses=PreviewOutput)
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


# Versions ----------------------------------------------------------------------------------------


class TriggerOutput(serializers.ModelSerializer):
    class Meta:
        model = TrainingTrigger
        fields = ["id", "status", "trigger", "job_id", "error", "created_at", "fired_at"]


class VersionOutput(serializers.ModelSerializer):
    rule_name = serializers.CharField(source="rule.name", read_only=True)
    built_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    published_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
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
        try:
            trigger = obj.training_trigger  # joined in by selectors.dataset_version_list
        except TrainingTrigger.DoesNotExist:
            return None
        return TriggerOutput(trigger).data


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
        version, created = services.dataset_version_build(rule=rule, built_by=request.user)
        return Response(
            self.OutputSerializer({"created": created, "version": version}).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class VersionListApi(generics.ListAPIView):
    """Dataset versions, newest first; filter by rule, purpose, status, kind."""

    permission_classes = [IsCuratorOrEngineer]
    serializer_class = VersionOutput

    class FilterSerializer(serializers.Serializer):
        rule = serializers.IntegerField(required=False)
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


class VersionPublishApi(APIView):
    """Publish a draft (curators); a rule's training trigger then creates its training job."""

    permission_classes = [IsCurator]

    @extend_schema(request=None, responses=VersionOutput)
    def post(self, request, pk: int):
        version = get_object_or_404(DatasetVersion, pk=pk)
        version = services.dataset_version_publish(version=version, published_by=request.user)
        return Response(VersionOutput(version).data)


class VersionRetireApi(APIView):
    permission_classes = [IsCurator]

    @extend_schema(request=None, responses=VersionOutput)
    def post(self, request, pk: int):
        version = get_object_or_404(DatasetVersion, pk=pk)
        version = services.dataset_version_retire(version=version, retired_by=request.user)
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

    @extend_schema(responses=OutputSerializer)
    def get(self, request, pk: int, other: int):
        old = get_object_or_404(DatasetVersion, pk=pk)
        new = get_object_or_404(DatasetVersion, pk=other)
        diff = selectors.dataset_version_diff(old=old, new=new)
        return Response(self.OutputSerializer(diff).data)


# Exports -----------------------------------------------------------------------------------------


class ExportOutput(serializers.ModelSerializer):
    progress_percent = serializers.IntegerField(read_only=True)
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = DatasetExport
        fields = [
            "id",
            "version",
            "format",
            "shard_size",
            "status",
            "total",
            "done",
            "parts",
            "progress_percent",
            "storage_prefix",
            "files",
            "size_bytes",
            "sha256",
            "error",
            "requested_by",
            "created_at",
            "started_at",
            "finished_at",
            "download_url",
        ]

    def get_download_url(self, obj: DatasetExport) -> str:
        return reverse("api-dataset-export-download", kwargs={"pk": obj.pk})


class ExportCreateApi(APIView):
    """Export a published version (queued on the ``default`` queue; poll its progress)."""

    permission_classes = [IsCuratorOrEngineer]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ExportCreateInput"  # unique schema component name

        format = serializers.ChoiceField(choices=ExportFormat.choices)
        shard_size = serializers.IntegerField(required=False, allow_null=True)

    @extend_schema(request=InputSerializer, responses={201: ExportOutput})
    def post(self, request, pk: int):
        version = get_object_or_404(DatasetVersion, pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        export = services.dataset_export_create(
            version=version,
            export_format=data.validated_data["format"],
            shard_size=data.validated_data.get("shard_size"),
            requested_by=request.user,
        )
        return Response(ExportOutput(export).data, status=status.HTTP_201_CREATED)


class ExportBatchCreateApi(APIView):
    """Export a published version in several formats at once: one task writes them all in one
    pass over the manifest and the files. Answers the exports, in the order asked."""

    permission_classes = [IsCuratorOrEngineer]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ExportBatchCreateInput"

        formats = serializers.ListField(
            child=serializers.ChoiceField(choices=ExportFormat.choices), allow_empty=False
        )
        shard_size = serializers.IntegerField(required=False, allow_null=True)

    @extend_schema(request=InputSerializer, responses={201: ExportOutput(many=True)})
    def post(self, request, pk: int):
        version = get_object_or_404(DatasetVersion, pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        exports = services.dataset_exports_create(
            version=version,
            export_formats=data.validated_data["formats"],
            shard_size=data.validated_data.get("shard_size"),
            requested_by=request.user,
        )
        return Response(ExportOutput(exports, many=True).data, status=status.HTTP_201_CREATED)


class ExportListApi(generics.ListAPIView):
    permission_classes = [IsCuratorOrEngineer]
    serializer_class = ExportOutput

    @extend_schema(parameters=[OpenApiParameter("version", int)])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        version = self.request.query_params.get("version")
        if version is not None and not version.isdigit():
            raise serializers.ValidationError({"version": "Must be an integer."})
        return selectors.dataset_export_list(version=int(version) if version else None)


class ExportDetailApi(generics.RetrieveAPIView):
    permission_classes = [IsCuratorOrEngineer]
    serializer_class = ExportOutput
    queryset = DatasetExport.objects.select_related("requested_by")


class ExportProgressApi(APIView):
    """Live counters for the given export ids (``?ids=1,2``), polled by the exports page."""

    permission_classes = [IsCuratorOrEngineer]

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ExportProgressOutput"  # unique schema component name

        id = serializers.IntegerField()
        status = serializers.CharField()
        total = serializers.IntegerField()
        done = serializers.IntegerField()
        size_bytes = serializers.IntegerField()
        sha256 = serializers.CharField()
        error = serializers.CharField()

    @extend_schema(
        parameters=[OpenApiParameter("ids", str, description="Comma-separated export ids")],
        responses=OutputSerializer(many=True),
    )
    def get(self, request):
        raw = request.query_params.get("ids", "")
        try:
            ids = [int(part) for part in raw.split(",") if part][:200]
        except ValueError as exc:
            raise serializers.ValidationError({"ids": "Must be comma-separated integers."}) from exc
        rows = selectors.export_progress(export_ids=ids)
        return Response(self.OutputSerializer(rows, many=True).data)


class ExportDownloadApi(APIView):
    """Download one file of a finished export (``?file=<name>``; optional for one-file
    exports). Curators and engineers only; every download is written to the audit log."""

    permission_classes = [IsCuratorOrEngineer]

    @extend_schema(parameters=[OpenApiParameter("file", str)], responses={(200, "*/*"): bytes})
    def get(self, request, pk: int):
        export = get_object_or_404(DatasetExport, pk=pk)
        entry = services.dataset_export_download_record(
            export=export, user=request.user, file_name=request.query_params.get("file")
        )
        if hasattr(default_storage, "bucket_name"):
            return HttpResponseRedirect(default_storage.url(entry["key"]))
        content_type = mimetypes.guess_type(entry["name"])[0] or "application/octet-stream"
        response = FileResponse(
            default_storage.open(entry["key"], "rb"),
            as_attachment=True,
            filename=entry["name"],
            content_type=content_type,
        )
        response["X-Checksum-Sha256"] = entry["sha256"]
        return response


class AuditOutput(serializers.ModelSerializer):
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = AuditEvent
        fields = ["id", "action", "actor", "version", "export", "details", "created_at"]


class AuditListApi(generics.ListAPIView):
    """The audit log of builds, publishes, exports and downloads (``?version=&export=&action=``)."""

    permission_classes = [IsCuratorOrEngineer]
    serializer_class = AuditOutput

    class FilterSerializer(serializers.Serializer):
        version = serializers.IntegerField(required=False)
        export = serializers.IntegerField(required=False)
        action = serializers.CharField(required=False)

    @extend_schema(
        parameters=[
            OpenApiParameter(n, type=t)
            for n, t in [("version", int), ("export", int), ("action", str)]
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        filters = self.FilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return selectors.audit_events(**filters.validated_data)


class TriggerFireApi(APIView):
    """Fire a pending or failed training trigger again."""

    permission_classes = [IsCuratorOrEngineer]

    @extend_schema(request=None, responses=TriggerOutput)
    def post(self, request, pk: int):
        trigger = get_object_or_404(TrainingTrigger, pk=pk)
        trigger = services.training_trigger_fire(trigger=trigger)
        return Response(TriggerOutput(trigger).data)


# Weak corpora ------------------------------------------------------------------------------------


class WeakSourceOutput(serializers.ModelSerializer):
    class Meta:
        model = WeakSource
        fields = [
            "id",
            "name",
            "kind",
            "description",
            "motion_bucket_edges",
            "candidate_count",
            "created_at",
        ]


class WeakSourceListApi(generics.ListAPIView):
    permission_classes = [IsCuratorOrEngineer]
    serializer_class = WeakSourceOutput

    def get_queryset(self):
        return selectors.weak_source_list()


class WeakSourceCreateApi(APIView):
    permission_classes = [IsCurator]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "WeakSourceCreateInput"  # unique schema component name

        name = serializers.SlugField(max_length=100)
        kind = serializers.ChoiceField(choices=DatasetKind.choices)
        description = serializers.CharField(required=False, allow_blank=True, default="")
        motion_bucket_edges = serializers.JSONField(required=False, default=list)

    @extend_schema(request=InputSerializer, responses={201: WeakSourceOutput})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        edges = data.validated_data["motion_bucket_edges"]
        if not isinstance(edges, list):
            raise serializers.ValidationError({"motion_bucket_edges": "Must be a list."})
        source = services.weak_source_create(**data.validated_data, created_by=request.user)
        return Response(WeakSourceOutput(source).data, status=status.HTTP_201_CREATED)


class WeakImportOutput(serializers.ModelSerializer):
    class Meta:
        model = WeakImport
        fields = [
            "id",
            "source",
            "file_format",
            "original_name",
            "status",
            "processed",
            "imported",
            "duplicates",
            "failed",
            "errors",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        ]


class WeakImportCreateApi(APIView):
    """Import a corpus into a weak source: upload a tar or Parquet file (multipart ``file``),
    or name a folder under the server's import root (``folder``). Runs on the ``default``
    queue; each bad file is reported in the import's ``errors`` and the rest imported."""

    permission_classes = [IsCurator]
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "WeakImportCreateInput"  # unique schema component name

        format = serializers.ChoiceField(choices=ImportFormat.choices)
        file = serializers.FileField(required=False)
        folder = serializers.CharField(required=False, max_length=1000)

    @extend_schema(request=InputSerializer, responses={201: WeakImportOutput})
    def post(self, request, pk: int):
        source = get_object_or_404(WeakSource, pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        weak_import = services.weak_import_create(
            source=source,
            file_format=data.validated_data["format"],
            upload=data.validated_data.get("file"),
            folder=data.validated_data.get("folder"),
            requested_by=request.user,
        )
        return Response(WeakImportOutput(weak_import).data, status=status.HTTP_201_CREATED)


class WeakImportListApi(generics.ListAPIView):
    permission_classes = [IsCuratorOrEngineer]
    serializer_class = WeakImportOutput

    def get_queryset(self):
        source = self.request.query_params.get("source")
        return selectors.weak_import_list(
            source=int(source) if source and source.isdigit() else None
        )


class WeakImportDetailApi(generics.RetrieveAPIView):
    permission_classes = [IsCuratorOrEngineer]
    serializer_class = WeakImportOutput
    queryset = WeakImport.objects.all()
