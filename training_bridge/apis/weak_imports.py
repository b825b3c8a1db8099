"""Weak corpus API: sources and their imports."""

from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from stickerloop.api import CheckedJSONParser, query_id
from stickerloop.roles import IsCurator, IsCuratorOrEngineer
from training_bridge import selectors
from training_bridge.models import (
    DatasetKind,
    ImportFormat,
    WeakImport,
    WeakSource,
)
from training_bridge.weak_imports import (
    weak_import_create,
    weak_source_create,
    weak_upload_size_check,
)

# A weak import's body holds the file and two short fields (format, and a folder of at most
# 1,000 characters); a body longer than the size limit by more than this holds a file over it.
FORM_OVERHEAD_BYTES = 64 * 1024


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
        source = weak_source_create(**data.validated_data, created_by=request.user)
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
    parser_classes = [MultiPartParser, FormParser, CheckedJSONParser]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "WeakImportCreateInput"  # unique schema component name

        format = serializers.ChoiceField(choices=ImportFormat.choices)
        file = serializers.FileField(
            required=False,
            help_text="A tar or Parquet file of at most STICKERLOOP_WEAK_IMPORT_MAX_BYTES "
            "(2 GiB unless configured).",
        )
        folder = serializers.CharField(required=False, max_length=1000)

        def validate(self, attrs):
            if attrs.get("file") is not None:
                weak_upload_size_check(attrs["file"].size)
            return attrs

    @extend_schema(request=InputSerializer, responses={201: WeakImportOutput})
    def post(self, request, pk: int):
        source = get_object_or_404(WeakSource, pk=pk)
        # Refused from the declared length before the body is read and spooled to disk; the
        # serializer checks the file's own size once it has been read.
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.WEAK_IMPORT_MAX_BYTES + FORM_OVERHEAD_BYTES:
            weak_upload_size_check(length - FORM_OVERHEAD_BYTES)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        weak_import = weak_import_create(
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

    @extend_schema(parameters=[OpenApiParameter("source", int, description="A source's id.")])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return selectors.weak_import_list(source=query_id(self.request, "source"))


class WeakImportDetailApi(generics.RetrieveAPIView):
    permission_classes = [IsCuratorOrEngineer]
    serializer_class = WeakImportOutput
    queryset = WeakImport.objects.all()
