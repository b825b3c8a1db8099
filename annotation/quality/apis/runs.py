"""Computations: asking for one (curators and engineers, who evaluate their models) and
reading its state."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import Campaign
from annotation.quality.models import AggregationRun, Method
from annotation.quality.services.runs import aggregation_run_request
from stickerloop.roles import IsCuratorOrEngineer


class RunOutput(serializers.ModelSerializer):
    class Meta:
        model = AggregationRun
        fields = [
            "id",
            "campaign",
            "status",
            "trigger",
            "methods",
            "error",
            "summary",
            "created_at",
            "started_at",
            "finished_at",
        ]


class ComputeApi(APIView):
    """Queue a computation of the campaign's results (202); one already waiting is returned."""

    permission_classes = [IsCuratorOrEngineer]

    @extend_schema_serializer(component_name="QualityComputeInput")
    class InputSerializer(serializers.Serializer):
        methods = serializers.ListField(
            child=serializers.CharField(),
            required=False,
            allow_empty=False,
            help_text=f"Consensus methods: {', '.join(Method.values)}. Default: majority, "
            "dawid_skene, mean and median where they fit.",
        )

    @extend_schema(request=InputSerializer, responses={202: RunOutput})
    def post(self, request, pk: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run = aggregation_run_request(
            campaign=campaign,
            methods=data.validated_data.get("methods"),
            requested_by=request.user,
        )
        return Response(RunOutput(run).data, status=status.HTTP_202_ACCEPTED)


class RunDetailApi(APIView):
    permission_classes = [IsCuratorOrEngineer]

    @extend_schema(responses=RunOutput)
    def get(self, request, pk: int):
        return Response(RunOutput(get_object_or_404(AggregationRun, pk=pk)).data)
