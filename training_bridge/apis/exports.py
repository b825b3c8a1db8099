"""Export API: ask for exports, follow and download them; the audit log."""

import mimetypes

from django.core.files.storage import default_storage
from django.http import FileResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.http import content_disposition_header
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from stickerloop.api import IdFilter, ids_param, query_id
from stickerloop.roles import IsCuratorOrEngineer
from stickerloop.schema import ErrorSerializer
from stickerloop.storage import is_bucket
from training_bridge import selectors
from training_bridge.exports.create import (
    dataset_export_create,
    dataset_export_download_record,
    dataset_exports_create,
)
from training_bridge.models import (
    AuditEvent,
    DatasetExport,
    DatasetVersion,
    ExportFormat,
)


class ExportOutput(serializers.ModelSerializer):
    progress_percent = serializers.IntegerField(read_only=True)
    requested_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
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
        export = dataset_export_create(
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
        exports = dataset_exports_create(
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
        return selectors.dataset_export_list(version=query_id(self.request, "version"))


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
        ids = ids_param(request)
        rows = selectors.export_progress(export_ids=ids)
        return Response(self.OutputSerializer(rows, many=True).data)


class ExportDownloadApi(APIView):
    """Download one file of a finished export (``?file=<name>``; optional for one-file
    exports). Curators and engineers only; every download is written to the audit log."""

    permission_classes = [IsCuratorOrEngineer]

    @extend_schema(
        parameters=[OpenApiParameter("file", str)],
        responses={
            (200, "*/*"): bytes,
            302: OpenApiResponse(description="To the file in object storage (S3)."),
            409: ErrorSerializer,
        },
    )
    def get(self, request, pk: int):
        export = get_object_or_404(DatasetExport, pk=pk)
        entry = dataset_export_download_record(
            export=export, user=request.user, file_name=request.query_params.get("file")
        )
        if is_bucket():
            # The bucket answers the presigned GET with this Content-Disposition (it is part
            # of the signature), so the browser saves the file under a name that says what it is.
            disposition = content_disposition_header(True, entry["download_name"])
            return HttpResponseRedirect(
                default_storage.url(
                    entry["key"], parameters={"ResponseContentDisposition": disposition}
                )
            )
        content_type = mimetypes.guess_type(entry["name"])[0] or "application/octet-stream"
        response = FileResponse(
            default_storage.open(entry["key"], "rb"),
            as_attachment=True,
            filename=entry["download_name"],
            content_type=content_type,
        )
        response["X-Checksum-Sha256"] = entry["sha256"]
        return response


class AuditOutput(serializers.ModelSerializer):
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = AuditEvent
        fields = ["id", "action", "actor", "version", "export", "details", "created_at"]


class AuditListApi(generics.ListAPIView):
    """The audit log of builds, publishes, exports and downloads (``?version=&export=&action=``)."""

    permission_classes = [IsCuratorOrEngineer]
    serializer_class = AuditOutput

    class FilterSerializer(serializers.Serializer):
        version = IdFilter()
        export = IdFilter()
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
