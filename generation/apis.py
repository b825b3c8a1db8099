"""Generation API: one class per operation, nested input and output serializers."""

from django.core.files.base import ContentFile
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from generation import selectors
from generation.models import (
    BatchKind,
    Candidate,
    CandidateKind,
    EnhancerKind,
    GenerationBatch,
    ModelKind,
    ModelRole,
    ModelVersion,
    Prompt,
    PromptEnhancer,
    PromptFileFormat,
    PromptImport,
    PromptSet,
)
from generation.pipelines.enhancers import (
    MAX_STYLE_PHRASE_CHARS,
    MAX_STYLE_PHRASES,
    MAX_TEMPLATE_CHARS,
)
from generation.services.batches import (
    MOTION_PROMPT_MAX_CHARS,
    EnhancerChoice,
    MotionPrompt,
    generation_batch_cancel,
    generation_batch_create,
    motion_prompts_parse,
)
from generation.services.enhancers import prompt_enhancer_create, prompt_set_enhancer_set
from generation.services.model_versions import model_version_register
from generation.services.prompts import (
    prompt_file_is_large,
    prompt_file_size_check,
    prompt_import_create,
    prompt_set_import,
)
from stickerloop.api import CheckedJSONParser, IdFilter, ids_param
from stickerloop.ids import MAX_ID
from stickerloop.media import media_url
from stickerloop.roles import IsCuratorOrEngineer, IsEngineer


class ModelVersionOutput(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "name",
            "kind",
            "role",
            "uri",
            "description",
            "default_params",
            "max_prompt_tokens",
            "parent",
            "provenance",
            "is_active",
            "created_at",
        ]


class ModelVersionListApi(generics.ListAPIView):
    """Model versions (curators and engineers)."""

    permission_classes = [IsCuratorOrEngineer]
    serializer_class = ModelVersionOutput

    def get_queryset(self):
        return selectors.model_version_list(kind=self.request.query_params.get("kind"))


class ModelVersionDetailApi(generics.RetrieveAPIView):
    permission_classes = [IsCuratorOrEngineer]
    serializer_class = ModelVersionOutput
    queryset = ModelVersion.objects.all()


class ModelVersionRegisterApi(APIView):
    """Register a diffusers model folder (engineers)."""

    permission_classes = [IsEngineer]

    class InputSerializer(serializers.Serializer):
        name = serializers.SlugField(max_length=100)
        kind = serializers.ChoiceField(choices=ModelKind.choices)
        role = serializers.ChoiceField(choices=ModelRole.choices, default=ModelRole.BASE)
        uri = serializers.CharField(max_length=1000)
        description = serializers.CharField(required=False, allow_blank=True, default="")
        default_params = serializers.DictField(required=False, default=dict)
        parent = serializers.PrimaryKeyRelatedField(
            queryset=ModelVersion.objects.all(), required=False, allow_null=True
        )

    @extend_schema(request=InputSerializer, responses={201: ModelVersionOutput})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = model_version_register(**data.validated_data, created_by=request.user)
        return Response(ModelVersionOutput(version).data, status=status.HTTP_201_CREATED)


class PromptEnhancerOutput(serializers.ModelSerializer):
    class Meta:
        model = PromptEnhancer
        fields = [
            "id",
            "name",
            "kind",
            "template",
            "style_phrases",
            "uri",
            "max_new_tokens",
            "description",
            "created_at",
        ]


class PromptEnhancerListApi(generics.ListAPIView):
    """Prompt enhancers (curators and engineers)."""

    permission_classes = [IsCuratorOrEngineer]
    serializer_class = PromptEnhancerOutput

    def get_queryset(self):
        return selectors.prompt_enhancer_list()


class PromptEnhancerDetailApi(generics.RetrieveAPIView):
    permission_classes = [IsCuratorOrEngineer]
    serializer_class = PromptEnhancerOutput

    def get_queryset(self):
        return selectors.prompt_enhancer_list()


class PromptEnhancerCreateApi(APIView):
    """Register a prompt enhancer: a template with a ``{prompt}`` slot and style phrases
    (curators and engineers), or a transformers text-generation model from a local folder,
    which must load (engineers only). 400 names the field: a template without ``{prompt}``, a
    folder that does not load (with the loader's reason). Enhancers are never edited: batches
    name the one they applied."""

    permission_classes = [IsCuratorOrEngineer]

    class InputSerializer(serializers.Serializer):
        name = serializers.SlugField(max_length=100)
        kind = serializers.ChoiceField(choices=EnhancerKind.choices)
        template = serializers.CharField(
            max_length=MAX_TEMPLATE_CHARS,
            trim_whitespace=False,
            help_text="Holds {prompt}: a template enhancer's output, or what the model reads.",
        )
        style_phrases = serializers.ListField(
            child=serializers.CharField(max_length=MAX_STYLE_PHRASE_CHARS),
            max_length=MAX_STYLE_PHRASES,
            required=False,
            default=list,
            help_text="Template enhancers: appended after the filled template.",
        )
        uri = serializers.CharField(
            max_length=1000,
            required=False,
            allow_blank=True,
            default="",
            help_text="Text-generation enhancers: the model's local folder (absolute path).",
        )
        max_new_tokens = serializers.IntegerField(
            required=False, default=64, help_text="Text-generation enhancers: 1 to 256."
        )
        description = serializers.CharField(required=False, allow_blank=True, default="")

    @extend_schema(request=InputSerializer, responses={201: PromptEnhancerOutput})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        enhancer = prompt_enhancer_create(**data.validated_data, created_by=request.user)
        return Response(PromptEnhancerOutput(enhancer).data, status=status.HTTP_201_CREATED)


class PromptOutput(serializers.ModelSerializer):
    tags = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")

    class Meta:
        model = Prompt
        fields = ["id", "position", "text", "enhanced_text", "tags"]


class PromptSetOutput(serializers.ModelSerializer):
    prompt_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = PromptSet
        fields = [
            "id",
            "name",
            "description",
            "is_held_out",
            "enhancer",
            "prompt_count",
            "created_at",
        ]


class PromptSetListApi(generics.ListAPIView):
    permission_classes = [IsCuratorOrEngineer]
    serializer_class = PromptSetOutput

    def get_queryset(self):
        return selectors.prompt_set_list()


class PromptSetDetailApi(APIView):
    permission_classes = [IsCuratorOrEngineer]

    class OutputSerializer(PromptSetOutput):
        prompts = PromptOutput(many=True, read_only=True)

        class Meta(PromptSetOutput.Meta):
            fields = [*PromptSetOutput.Meta.fields, "prompts"]

    @extend_schema(responses=OutputSerializer)
    def get(self, request, pk: int):
        prompt_set = get_object_or_404(
            selectors.prompt_set_list().prefetch_related("prompts__tags"), pk=pk
        )
        return Response(self.OutputSerializer(prompt_set).data)


class PromptSetEnhancerApi(APIView):
    """Choose the enhancer new batches of a prompt set apply unless they name another
    (``null``: none). Batches made before keep theirs."""

    permission_classes = [IsCuratorOrEngineer]

    class InputSerializer(serializers.Serializer):
        enhancer = serializers.PrimaryKeyRelatedField(
            queryset=PromptEnhancer.objects.all(), allow_null=True
        )

    @extend_schema(request=InputSerializer, responses=PromptSetOutput)
    def post(self, request, pk: int):
        prompt_set = get_object_or_404(PromptSet, pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        prompt_set_enhancer_set(prompt_set=prompt_set, enhancer=data.validated_data["enhancer"])
        return Response(PromptSetOutput(selectors.prompt_set_list().get(pk=pk)).data)


class PromptImportOutput(serializers.ModelSerializer):
    status_url = serializers.SerializerMethodField(help_text="Where to follow the import.")

    class Meta:
        model = PromptImport
        fields = [
            "id",
            "name",
            "file_format",
            "original_name",
            "size_bytes",
            "status",
            "processed",
            "progress",
            "report",
            "error",
            "prompt_set",
            "created_at",
            "started_at",
            "finished_at",
            "status_url",
        ]

    def get_status_url(self, obj: PromptImport) -> str:
        return reverse("api-prompt-import-detail", kwargs={"pk": obj.pk})


class PromptSetImportApi(APIView):
    """Import a prompt set from a text, CSV or JSONL file (multipart ``file``) or ``content``.

    A file up to ``STICKERLOOP_PROMPT_IMPORT_SYNC_BYTES`` (1 MiB) is imported at once: 201 with
    the report. A larger one is imported by a task: 202 with the import and its ``status_url``
    (also the ``Location`` header), which shows the status, progress and, once it has ended, the
    report or the error.
    """

    permission_classes = [IsCuratorOrEngineer]
    parser_classes = [MultiPartParser, FormParser, CheckedJSONParser]

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        format = serializers.ChoiceField(choices=PromptFileFormat.choices, required=False)
        description = serializers.CharField(required=False, allow_blank=True, default="")
        is_held_out = serializers.BooleanField(required=False, default=False)
        file = serializers.FileField(required=False)
        content = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)

        def validate(self, attrs):
            upload = attrs.pop("file", None)
            if upload is None and "content" not in attrs:
                raise serializers.ValidationError({"file": "Upload a file or give 'content'."})
            if upload is not None:
                attrs.pop("content", None)
                prompt_file_size_check(upload.size)
                if "format" not in attrs:
                    suffix = upload.name.rsplit(".", 1)[-1].lower()
                    attrs["format"] = {"csv": "csv", "jsonl": "jsonl"}.get(suffix, "text")
                if prompt_file_is_large(upload.size):
                    # Read by the task, not here.
                    attrs["upload"] = upload
                else:
                    try:
                        attrs["content"] = upload.read().decode("utf-8")
                    except UnicodeDecodeError as exc:
                        raise serializers.ValidationError(
                            {"file": "The file is not UTF-8 text."}
                        ) from exc
            else:
                encoded = attrs["content"].encode("utf-8")
                if prompt_file_is_large(len(encoded)):
                    attrs["upload"] = ContentFile(encoded, name="content")
                    del attrs["content"]
            attrs.setdefault("format", "text")
            return attrs

    class OutputSerializer(serializers.Serializer):
        prompt_set = PromptSetOutput()
        imported = serializers.IntegerField()
        duplicates = serializers.ListField(
            child=serializers.DictField(), help_text="The first 100 duplicates."
        )
        duplicate_count = serializers.IntegerField()
        empty_lines = serializers.ListField(
            child=serializers.IntegerField(), help_text="The first 100 empty lines."
        )
        empty_line_count = serializers.IntegerField()

    @extend_schema(
        request=InputSerializer, responses={201: OutputSerializer, 202: PromptImportOutput}
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        if "upload" in values:
            prompt_import = prompt_import_create(
                name=values["name"],
                file=values["upload"],
                file_format=values["format"],
                description=values["description"],
                is_held_out=values["is_held_out"],
                created_by=request.user,
            )
            body = PromptImportOutput(prompt_import).data
            return Response(
                body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["status_url"]}
            )
        prompt_set, report = prompt_set_import(
            name=values["name"],
            content=values["content"],
            file_format=values["format"],
            description=values["description"],
            is_held_out=values["is_held_out"],
            created_by=request.user,
        )
        prompt_set.prompt_count = report.imported
        payload = {
            "prompt_set": prompt_set,
            "imported": report.imported,
            "duplicates": report.duplicates,
            "duplicate_count": report.duplicate_count,
            "empty_lines": report.empty_lines,
            "empty_line_count": report.empty_line_count,
        }
        return Response(self.OutputSerializer(payload).data, status=status.HTTP_201_CREATED)


class PromptImportDetailApi(generics.RetrieveAPIView):
    """A prompt import by a task: its status, progress (percent) and lines read, and once it
    has ended its report (succeeded: the prompt set made) or its error (failed: nothing
    stored)."""

    permission_classes = [IsCuratorOrEngineer]
    serializer_class = PromptImportOutput

    def get_queryset(self):
        return selectors.prompt_import_list()


class BatchOutput(serializers.ModelSerializer):
    model_versions = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    progress_percent = serializers.IntegerField(read_only=True)

    class Meta:
        model = GenerationBatch
        fields = [
            "id",
            "name",
            "kind",
            "status",
            "prompt_set",
            "enhancer",
            "model_versions",
            "seeds",
            "params",
            "motion_prompts",
            "total",
            "done_count",
            "failed_count",
            "progress_percent",
            "chunks_total",
            "chunks_finished",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        ]


class BatchListApi(generics.ListAPIView):
    """Batches with their progress, newest first."""

    permission_classes = [IsCuratorOrEngineer]
    serializer_class = BatchOutput

    def get_queryset(self):
        return selectors.batch_list()


class BatchDetailApi(generics.RetrieveAPIView):
    permission_classes = [IsCuratorOrEngineer]
    serializer_class = BatchOutput

    def get_queryset(self):
        return selectors.batch_list()


# One per source sticker; far above any batch a worker pool finishes in a day.
MAX_MOTION_PROMPTS = 10_000
MAX_MOTION_PROMPTS_CSV_CHARS = 2_000_000


class BatchCreateApi(APIView):
    """Ask for a sticker batch (prompt set × model versions × seeds) or an animation batch
    (source sticker candidates × animation model versions × seeds)."""

    permission_classes = [IsCuratorOrEngineer]

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
        kind = serializers.ChoiceField(choices=BatchKind.choices)
        model_versions = serializers.PrimaryKeyRelatedField(
            queryset=ModelVersion.objects.all(), many=True, allow_empty=False
        )
        prompt_set = serializers.PrimaryKeyRelatedField(
            queryset=PromptSet.objects.all(), required=False, allow_null=True
        )
        sources = serializers.PrimaryKeyRelatedField(
            queryset=Candidate.objects.all(), many=True, required=False
        )
        seeds = serializers.ListField(child=serializers.JSONField(), allow_empty=True)
        params = serializers.DictField(required=False, default=dict)
        enhancer = serializers.PrimaryKeyRelatedField(
            queryset=PromptEnhancer.objects.all(),
            required=False,
            allow_null=True,
            help_text="The prompt enhancer a sticker batch applies; null: none; absent: the "
            "prompt set's.",
        )

        class MotionPromptInput(serializers.Serializer):
            source = serializers.IntegerField(
                min_value=1, max_value=MAX_ID, help_text="A sticker candidate's id."
            )
            motion_prompt = serializers.CharField(
                max_length=MOTION_PROMPT_MAX_CHARS, help_text="How that sticker should move."
            )

        motion_prompts = MotionPromptInput(
            many=True,
            required=False,
            max_length=MAX_MOTION_PROMPTS,
            help_text="Animation batches: a motion prompt per source sticker. Stickers without "
            "one take params.motion_prompt, else their own prompt. Without sources, the "
            "stickers named here are the sources. An unknown id, or one that is not a sticker, "
            "is a 400 naming the item (item 1 is the first).",
        )
        motion_prompts_csv = serializers.CharField(
            required=False,
            allow_blank=True,
            max_length=MAX_MOTION_PROMPTS_CSV_CHARS,
            trim_whitespace=False,
            help_text="The same as CSV instead of a list: `sticker id,motion prompt` a line, an "
            "optional header row; errors name the line. Not together with motion_prompts.",
        )

        def validate(self, attrs):
            if attrs.get("motion_prompts") and attrs.get("motion_prompts_csv", "").strip():
                raise serializers.ValidationError(
                    {"motion_prompts_csv": ["Give motion prompts as a list or as CSV, not both."]}
                )
            return attrs

    @extend_schema(request=InputSerializer, responses={201: BatchOutput})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        if values.get("motion_prompts_csv", "").strip():
            motion_prompts = motion_prompts_parse(content=values["motion_prompts_csv"])
        else:
            motion_prompts = [
                MotionPrompt(source=m["source"], text=m["motion_prompt"], where=f"Item {i}")
                for i, m in enumerate(values.get("motion_prompts") or [], start=1)
            ]
        batch = generation_batch_create(
            motion_prompts=motion_prompts,
            enhancer=values.get("enhancer", EnhancerChoice.PROMPT_SET),
            name=values["name"],
            kind=values["kind"],
            model_versions=values["model_versions"],
            prompt_set=values.get("prompt_set"),
            sources=values.get("sources") or [],
            seeds=values["seeds"],
            params=values["params"],
            requested_by=request.user,
        )
        return Response(BatchOutput(batch).data, status=status.HTTP_201_CREATED)


class BatchCancelApi(APIView):
    permission_classes = [IsCuratorOrEngineer]

    @extend_schema(request=None, responses=BatchOutput)
    def post(self, request, pk: int):
        batch = get_object_or_404(GenerationBatch, pk=pk)
        batch = generation_batch_cancel(batch=batch)
        return Response(BatchOutput(batch).data)


class CandidateOutput(serializers.ModelSerializer):
    model_version = serializers.SlugRelatedField(read_only=True, slug_field="name", allow_null=True)
    file_url = serializers.SerializerMethodField()

    class Meta:
        model = Candidate
        fields = [
            "id",
            "kind",
            "origin",
            "batch",
            "model_version",
            "prompt",
            "source",
            "seed",
            "params",
            "raw_prompt",
            "enhanced_prompt",
            "motion_prompt",
            "file",
            "file_url",
            "frames_prefix",
            "width",
            "height",
            "frame_count",
            "file_size",
            "sha256",
            "device",
            "inference_ms",
            "motion_score",
            "created_at",
        ]

    def get_file_url(self, obj: Candidate) -> str:
        return media_url(obj.file)


class CandidateListApi(generics.ListAPIView):
    """Candidates, filtered by batch, model version, prompt, prompt set, tag, kind or source."""

    permission_classes = [IsCuratorOrEngineer]
    serializer_class = CandidateOutput

    class FilterSerializer(serializers.Serializer):
        batch = IdFilter()
        model_version = IdFilter()
        prompt = IdFilter()
        prompt_set = IdFilter()
        tag = serializers.CharField(required=False, max_length=64)
        kind = serializers.ChoiceField(choices=CandidateKind.choices, required=False)
        source = IdFilter()

    @extend_schema(
        parameters=[
            OpenApiParameter(name, type=t)
            for name, t in [
                ("batch", int),
                ("model_version", int),
                ("prompt", int),
                ("prompt_set", int),
                ("tag", str),
                ("kind", str),
                ("source", int),
            ]
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        filters = self.FilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return selectors.candidate_list(**filters.validated_data)


class CandidateDetailApi(generics.RetrieveAPIView):
    permission_classes = [IsCuratorOrEngineer]
    serializer_class = CandidateOutput
    queryset = Candidate.objects.select_related("model_version")


class BatchProgressApi(APIView):
    """Live counters for the given batch ids (``?ids=1,2,3``), polled by the batch list page."""

    permission_classes = [IsCuratorOrEngineer]

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        status = serializers.CharField()
        total = serializers.IntegerField()
        done_count = serializers.IntegerField()
        failed_count = serializers.IntegerField()
        error = serializers.CharField()

    @extend_schema(
        parameters=[OpenApiParameter("ids", str, description="Comma-separated batch ids")],
        responses=OutputSerializer(many=True),
    )
    def get(self, request):
        ids = ids_param(request)
        return Response(
            self.OutputSerializer(selectors.batch_progress(batch_ids=ids), many=True).data
        )
