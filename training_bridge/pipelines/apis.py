"""Pipeline API: one class per operation, nested input and output serializers. Engineers
declare and resume pipelines; curators and engineers read them."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from stickerloop.roles import IsCuratorOrEngineer, IsEngineer
from training_bridge.pipelines import selectors
from training_bridge.pipelines.models import Pipeline, PipelineStage, PipelineStatus
from training_bridge.pipelines.services.declaration import MAX_STAGES, pipeline_create
from training_bridge.pipelines.services.pipelines import pipeline_resume


class PipelineStageOutput(serializers.ModelSerializer):
    model_version = serializers.SerializerMethodField(
        help_text="Training stages: the model version the job produced."
    )
    base_stage = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)

    class Meta:
        model = PipelineStage
        fields = [
            "id",
            "position",
            "name",
            "kind",
            "status",
            "error",
            "attempts",
            "role",
            "rule",
            "dataset_version",
            "recipe",
            "params",
            "inputs",
            "evaluate",
            "base_model_version",
            "base_stage",
            "arms",
            "prompt_set",
            "seeds",
            "training_trigger",
            "job",
            "model_version",
            "experiment",
            "started_at",
            "finished_at",
        ]

    def get_model_version(self, obj: PipelineStage) -> int | None:
        return obj.job.output_model_version_id if obj.job_id else None


class PipelineOutput(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = Pipeline
        fields = [
            "id",
            "name",
            "description",
            "status",
            "current_position",
            "error",
            "created_by",
            "created_at",
            "updated_at",
            "finished_at",
        ]


class PipelineDetailOutput(PipelineOutput):
    stages = serializers.SerializerMethodField()

    class Meta(PipelineOutput.Meta):
        fields = [*PipelineOutput.Meta.fields, "stages"]

    @extend_schema_field(PipelineStageOutput(many=True))
    def get_stages(self, obj: Pipeline) -> list[dict]:
        return PipelineStageOutput(selectors.pipeline_stages(pipeline=obj), many=True).data


class PipelineListApi(generics.ListAPIView):
    """Pipelines, newest first; ``?status=`` running, succeeded or failed."""

    permission_classes = [IsCuratorOrEngineer]
    serializer_class = PipelineOutput

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=PipelineStatus.choices, required=False)

    @extend_schema(parameters=[OpenApiParameter("status", str, enum=PipelineStatus.values)])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        filters = self.FilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return selectors.pipeline_list(status=filters.validated_data.get("status"))


class PipelineDetailApi(APIView):
    """A pipeline with each stage's state and the rows it links (dataset version, training
    trigger, job, model version, experiment)."""

    permission_classes = [IsCuratorOrEngineer]

    @extend_schema(responses=PipelineDetailOutput)
    def get(self, request, pk: int):
        pipeline = get_object_or_404(Pipeline.objects.select_related("created_by"), pk=pk)
        return Response(PipelineDetailOutput(pipeline).data)


class PipelineCreateApi(APIView):
    """Declare a pipeline (engineers): ``stages`` in the order they run, each ``{"name",
    "kind", ...}``. ``dataset``: ``rule``, ``role``, optional ``dataset_version``;
    ``training``: ``recipe``, ``base_model_version`` or ``base_stage``, ``params``,
    ``evaluate``, ``inputs`` (role → an earlier dataset stage's name); ``evaluation``:
    ``arms``, ``base_model_version`` or ``base_stage``, ``prompt_set``, ``seeds``. It starts
    at once. A refusal (400) names the field (``stages.4.inputs.style``) and stores nothing."""

    permission_classes = [IsEngineer]

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        description = serializers.CharField(
            required=False, allow_blank=True, default="", max_length=5000
        )
        stages = serializers.JSONField(
            help_text=f"1 to {MAX_STAGES} stages, in the order they run."
        )

    @extend_schema(request=InputSerializer, responses={201: PipelineDetailOutput})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        pipeline = pipeline_create(
            name=values["name"],
            description=values["description"],
            stages=values["stages"],
            created_by=request.user,
        )
        return Response(PipelineDetailOutput(pipeline).data, status=status.HTTP_201_CREATED)


class PipelineResumeApi(APIView):
    """Restart a failed pipeline from the stage it failed at (409 unless it failed)."""

    permission_classes = [IsEngineer]

    @extend_schema(request=None, responses=PipelineDetailOutput)
    def post(self, request, pk: int):
        pipeline = pipeline_resume(pipeline=get_object_or_404(Pipeline, pk=pk))
        return Response(PipelineDetailOutput(pipeline).data)
