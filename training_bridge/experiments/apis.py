"""Experiment API: one class per operation, nested input and output serializers. Engineers
create experiments, compute their results and record instruments' scores; curators and
engineers read them."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import generics, serializers, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.quality.apis.tables import FORMAT, CSVRenderer
from generation.models import Candidate, ModelVersion, PromptSet
from generation.pipelines.enhancers import MAX_TEMPLATE_CHARS
from stickerloop.api import IdFilter
from stickerloop.ids import MAX_ID
from stickerloop.roles import IsCuratorOrEngineer, IsEngineer
from training_bridge.experiments import selectors
from training_bridge.experiments.models import Axis, Experiment, ExperimentArm
from training_bridge.experiments.services.experiments import (
    MAX_ARMS,
    MAX_LABEL_CHARS,
    MAX_OVERLAP,
    MAX_SEED,
    ArmSpec,
    experiment_create,
)
from training_bridge.experiments.services.results import experiment_results_compute
from training_bridge.experiments.services.scores import (
    MAX_SCORES,
    ScoreEntry,
    experiment_scores_record,
)
from training_bridge.jobs.evaluation import EVALUATION_OVERLAP, MAX_EVALUATION_SEEDS


class ArmOutput(serializers.ModelSerializer):
    model_version_name = serializers.CharField(source="model_version.name", read_only=True)

    class Meta:
        model = ExperimentArm
        fields = [
            "id",
            "position",
            "label",
            "model_version",
            "model_version_name",
            "template",
            "is_base",
            "prompt_set",
            "batch",
        ]


class ExperimentOutput(serializers.ModelSerializer):
    arms = ArmOutput(many=True, read_only=True)
    sources = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = Experiment
        fields = [
            "id",
            "name",
            "description",
            "kind",
            "status",
            "prompt_set",
            "sources",
            "seeds",
            "overlap",
            "arms",
            "rating_campaign",
            "pair_campaign",
            "error",
            "results_computed_at",
            "created_at",
            "updated_at",
        ]


class ExperimentListOutput(ExperimentOutput):
    class Meta(ExperimentOutput.Meta):
        fields = [f for f in ExperimentOutput.Meta.fields if f != "sources"]


def _problems(errors: dict) -> str:
    """A nested serializer's errors on one line: ``field: message; field: message``."""
    return "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in errors.items())


def _experiment(pk: int) -> Experiment:
    return get_object_or_404(
        Experiment.objects.prefetch_related("arms__model_version", "sources"), pk=pk
    )


class ExperimentListApi(generics.ListAPIView):
    """Experiments, newest first; ``?model_version=`` those with an arm of that model version,
    ``?job=`` those with an arm of the model version that training job produced."""

    permission_classes = [IsCuratorOrEngineer]
    serializer_class = ExperimentListOutput

    class FilterSerializer(serializers.Serializer):
        model_version = IdFilter()
        job = IdFilter()

    @extend_schema(
        parameters=[OpenApiParameter("model_version", int), OpenApiParameter("job", int)]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        filters = self.FilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return selectors.experiment_list(
            model_version_id=filters.validated_data.get("model_version"),
            job_id=filters.validated_data.get("job"),
        )


class ExperimentDetailApi(APIView):
    permission_classes = [IsCuratorOrEngineer]

    @extend_schema(responses=ExperimentOutput)
    def get(self, request, pk: int):
        return Response(ExperimentOutput(_experiment(pk)).data)


class ExperimentCreateApi(APIView):
    """Create an experiment (engineers): 2 to 8 arms of one kind, each a model version, or the
    prompt-engineered base (a model version and a ``template`` with a ``{prompt}`` slot, image
    arms only), one of them the base (``is_base``; the first arm when none is marked). Image
    arms generate from a held-out ``prompt_set``; animation arms animate ``sources``, stickers
    of held-out prompts (default: the newest eight). Every arm uses the same ``seeds`` (at
    least two for images: diversity compares the samples of a prompt). The campaigns open to
    every active rater once every arm has generated. A refusal (400) names the field
    (``arms.1.template``) and stores nothing."""

    permission_classes = [IsEngineer]

    class ArmInputSerializer(serializers.Serializer):
        model_version = serializers.PrimaryKeyRelatedField(queryset=ModelVersion.objects.all())
        template = serializers.CharField(
            required=False,
            allow_blank=True,
            default="",
            max_length=MAX_TEMPLATE_CHARS,
            trim_whitespace=False,
            help_text="A prompt template with a {prompt} slot (image arms).",
        )
        label = serializers.CharField(
            required=False, allow_blank=True, default="", max_length=MAX_LABEL_CHARS
        )
        is_base = serializers.BooleanField(required=False, default=False)

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        description = serializers.CharField(
            required=False, allow_blank=True, default="", max_length=5000
        )
        arms = serializers.ListField(
            child=serializers.DictField(),
            max_length=MAX_ARMS * 4,
            help_text=f"2 to {MAX_ARMS} arms: model_version, template, label, is_base.",
        )
        prompt_set = serializers.PrimaryKeyRelatedField(
            queryset=PromptSet.objects.all(), required=False, allow_null=True, default=None
        )
        sources = serializers.PrimaryKeyRelatedField(
            queryset=Candidate.objects.all(), many=True, required=False, default=list
        )
        seeds = serializers.ListField(
            child=serializers.IntegerField(min_value=0, max_value=MAX_SEED),
            max_length=MAX_EVALUATION_SEEDS * 4,
        )
        overlap = serializers.IntegerField(
            required=False, default=EVALUATION_OVERLAP, min_value=1, max_value=MAX_OVERLAP
        )

        def validate_arms(self, value):
            arms, problems = [], {}
            for index, item in enumerate(value):
                entry = ExperimentCreateApi.ArmInputSerializer(data=item)
                if entry.is_valid():
                    arms.append(ArmSpec(**entry.validated_data))
                else:
                    problems[index] = entry.errors
            if problems:
                raise serializers.ValidationError(
                    [f"Arm {index + 1}: {_problems(errors)}" for index, errors in problems.items()]
                )
            return arms

    @extend_schema(request=InputSerializer, responses={201: ExperimentOutput})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        experiment = experiment_create(
            name=values["name"],
            description=values["description"],
            arms=values["arms"],
            prompt_set=values["prompt_set"],
            sources=values["sources"],
            seeds=values["seeds"],
            overlap=values["overlap"],
            created_by=request.user,
        )
        return Response(
            ExperimentOutput(_experiment(experiment.pk)).data, status=status.HTTP_201_CREATED
        )


@extend_schema_serializer(component_name="ExperimentResultRow")
class ResultRow(serializers.Serializer):
    experiment_id = serializers.IntegerField()
    arm_id = serializers.IntegerField()
    arm = serializers.CharField()
    is_base = serializers.BooleanField()
    model_version_id = serializers.IntegerField()
    model_version = serializers.CharField()
    template = serializers.CharField()
    job_id = serializers.IntegerField(allow_null=True)
    dataset_versions = serializers.CharField(help_text="role:version:manifest sha256, ;-joined.")
    prompt_set_id = serializers.IntegerField(allow_null=True)
    batch_id = serializers.IntegerField(allow_null=True)
    campaign_id = serializers.IntegerField(allow_null=True)
    axis = serializers.ChoiceField(choices=Axis.choices)
    source = serializers.CharField(help_text="human, platform, or an instrument (oracle).")
    value = serializers.FloatField()
    low = serializers.FloatField(allow_null=True)
    high = serializers.FloatField(allow_null=True)
    n = serializers.IntegerField(allow_null=True)
    method = serializers.CharField()
    details = serializers.JSONField()
    recorded_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="ExperimentResults")
class ResultsOutput(serializers.Serializer):
    experiment = ExperimentOutput()
    axes = serializers.ListField(child=serializers.CharField(), help_text="The kind's axes.")
    rows = ResultRow(many=True)


def _results_body(experiment: Experiment) -> dict:
    results = selectors.experiment_results(experiment=experiment)
    return {
        "experiment": ExperimentOutput(experiment).data,
        "axes": [axis for axis, _ in results.axes],
        "rows": ResultRow(selectors.experiment_result_rows(results), many=True).data,
    }


class ExperimentResultsApi(APIView):
    """Every score of every arm with what it is traced to (model version, job, dataset
    versions, prompt set, batch, campaign): JSON, or the rows as CSV with ``?format=csv``."""

    permission_classes = [IsCuratorOrEngineer]
    renderer_classes = [JSONRenderer, CSVRenderer]
    row_serializer = ResultRow

    @extend_schema(parameters=[FORMAT], responses=ResultsOutput)
    def get(self, request, pk: int):
        experiment = _experiment(pk)
        response = Response(_results_body(experiment))
        if request.accepted_renderer.format == "csv":
            response["Content-Disposition"] = (
                f'attachment; filename="experiment-{experiment.pk}-results.csv"'
            )
        return response


class ExperimentResultsComputeApi(APIView):
    """Compute the scores from the campaigns' judgments and the arms' candidates now (409
    while the arms are generating), replacing the platform's earlier ones; answers the rows."""

    permission_classes = [IsEngineer]

    @extend_schema(request=None, responses=ResultsOutput)
    def post(self, request, pk: int):
        experiment = _experiment(pk)
        experiment_results_compute(experiment=experiment)
        return Response(_results_body(_experiment(pk)))


class ExperimentScoresRecordApi(APIView):
    """Record an instrument's scores (engineers), e.g. the sticker world's oracle judges: one
    per arm, axis and ``source`` (not ``human`` or ``platform``, which the platform writes); a
    second report of the same replaces it. All or nothing; a refusal names
    ``scores.<index>.<field>``."""

    permission_classes = [IsEngineer]

    class ScoreInputSerializer(serializers.Serializer):
        arm = serializers.IntegerField(min_value=0, max_value=MAX_ID)
        axis = serializers.ChoiceField(choices=Axis.choices)
        source = serializers.CharField(max_length=40)
        value = serializers.FloatField()
        low = serializers.FloatField(required=False, allow_null=True, default=None)
        high = serializers.FloatField(required=False, allow_null=True, default=None)
        n = serializers.IntegerField(
            required=False, allow_null=True, default=None, min_value=0, max_value=2**31 - 1
        )
        method = serializers.CharField(required=False, allow_blank=True, default="", max_length=40)
        details = serializers.DictField(required=False, default=dict)

    class InputSerializer(serializers.Serializer):
        scores = serializers.ListField(child=serializers.DictField(), max_length=MAX_SCORES)

        def validate_scores(self, value):
            entries, problems = [], []
            for index, item in enumerate(value):
                entry = ExperimentScoresRecordApi.ScoreInputSerializer(data=item)
                if entry.is_valid():
                    values = dict(entry.validated_data)
                    entries.append(ScoreEntry(arm_id=values.pop("arm"), **values))
                else:
                    problems.append(
                        f"Score {index + 1}: "
                        + "; ".join(
                            f"{k}: {' '.join(map(str, v))}" for k, v in entry.errors.items()
                        )
                    )
            if problems:
                raise serializers.ValidationError(problems)
            return entries

    class OutputSerializer(serializers.Serializer):
        stored = serializers.IntegerField()

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request, pk: int):
        experiment = _experiment(pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        stored = experiment_scores_record(
            experiment=experiment,
            entries=data.validated_data["scores"],
            recorded_by=request.user,
        )
        return Response({"stored": len(stored)})
