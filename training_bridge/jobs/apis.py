"""Training job API: one class per operation, nested input and output serializers."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from generation.models import Candidate, ModelVersion, PromptSet
from stickerloop.api import ids_param
from stickerloop.roles import IsCurator, IsCuratorOrEngineer, IsEngineer
from training_bridge.apis.versions import TriggerOutput, VersionOutput
from training_bridge.jobs import selectors
from training_bridge.jobs.lifecycle import (
    training_job_cancel,
    training_job_create,
    training_job_resume,
)
from training_bridge.jobs.models import (
    DatasetRole,
    Launcher,
    Recipe,
    TrainingJob,
    TrainingJobDataset,
    TrainingJobEvaluation,
)
from training_bridge.jobs.output import training_job_register_output
from training_bridge.jobs.progress import training_job_progress_report
from training_bridge.jobs.triggers import dataset_version_publish_and_train, training_trigger_fire
from training_bridge.models import DatasetVersion, TrainingTrigger


class TrainingJobDatasetOutput(serializers.ModelSerializer):
    class Meta:
        model = TrainingJobDataset
        fields = ["role", "dataset_version", "manifest_sha256", "export_path"]


class TrainingJobEvaluationOutput(serializers.ModelSerializer):
    class Meta:
        model = TrainingJobEvaluation
        fields = ["status", "batch", "campaign", "pairs", "error"]


class TrainingJobOutput(serializers.ModelSerializer):
    datasets = TrainingJobDatasetOutput(source="dataset_links", many=True, read_only=True)
    progress_percent = serializers.IntegerField(read_only=True)
    evaluation = serializers.SerializerMethodField()

    class Meta:
        model = TrainingJob
        fields = [
            "id",
            "name",
            "recipe",
            "base_model_version",
            "datasets",
            "params",
            "launcher",
            "status",
            "attempt",
            "step",
            "total_steps",
            "progress_percent",
            "seconds_per_step",
            "eta_seconds",
            "last_loss",
            "load_seconds",
            "last_checkpoint_step",
            "resumed_from_step",
            "metrics",
            "error",
            "log_tail",
            "work_dir",
            "launch_command",
            "spec",
            "evaluate",
            "evaluation_prompt_set",
            "evaluation_seeds",
            "output_model_version",
            "evaluation",
            "trigger",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def get_evaluation(self, job: TrainingJob) -> dict | None:
        evaluation = getattr(job, "evaluation", None)
        if evaluation is None:
            return None
        data = TrainingJobEvaluationOutput(evaluation).data
        data["win_rates"] = [vars(w) for w in selectors.training_job_evaluation_results(job=job)]
        return data


class TrainingJobListOutput(TrainingJobOutput):
    """A list row: the job without its log tail, spec and metrics (see the detail)."""

    class Meta(TrainingJobOutput.Meta):
        fields = [
            f
            for f in TrainingJobOutput.Meta.fields
            if f not in ("log_tail", "spec", "metrics", "params")
        ]


class JobListApi(generics.ListAPIView):
    """Training jobs, newest first (``?status=``, ``?recipe=``)."""

    permission_classes = [IsCuratorOrEngineer]
    serializer_class = TrainingJobListOutput

    @extend_schema(parameters=[OpenApiParameter("status", str), OpenApiParameter("recipe", str)])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return selectors.training_job_list(
            status=self.request.query_params.get("status"),
            recipe=self.request.query_params.get("recipe"),
        ).select_related("evaluation")


class JobDetailApi(APIView):
    permission_classes = [IsCuratorOrEngineer]

    @extend_schema(responses=TrainingJobOutput)
    def get(self, request, pk: int):
        job = get_object_or_404(selectors.training_job_list(), pk=pk)
        return Response(TrainingJobOutput(job).data)


class JobCreateApi(APIView):
    """Start a training job from published dataset versions (engineers).

    ``datasets``: one ``{"role", "dataset_version"}`` per role of the recipe: finetune
    ``train``; sequential ``first``, ``second``; style_tailoring ``content``, ``style``;
    distill_student ``teacher_selection``. ``params``: the recipe's hyper-parameters
    (``max_train_steps``, ``learning_rate``, ``train_batch_size``, ``method`` full|lora|motion,
    ``timestep_split``, ``content_ratio``, ...). ``launcher`` ``external`` renders the command
    and spec for a cluster instead of queueing it.
    """

    permission_classes = [IsEngineer]

    class DatasetInput(serializers.Serializer):
        class Meta:
            ref_name = "TrainingJobCreateDatasetInput"

        role = serializers.ChoiceField(choices=DatasetRole.choices)
        dataset_version = serializers.IntegerField()

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "TrainingJobCreateInput"

        name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
        recipe = serializers.ChoiceField(choices=Recipe.choices)
        base_model_version = serializers.PrimaryKeyRelatedField(queryset=ModelVersion.objects.all())
        datasets = serializers.ListField(child=serializers.DictField(), allow_empty=True)
        params = serializers.DictField(required=False, default=dict)
        launcher = serializers.ChoiceField(choices=Launcher.choices, default=Launcher.QUEUE)
        launch_options = serializers.DictField(required=False, default=dict)
        evaluate = serializers.BooleanField(required=False, default=True)
        evaluation_prompt_set = serializers.PrimaryKeyRelatedField(
            queryset=PromptSet.objects.all(), required=False, allow_null=True
        )
        evaluation_sources = serializers.PrimaryKeyRelatedField(
            queryset=Candidate.objects.all(), many=True, required=False
        )
        evaluation_seeds = serializers.ListField(
            child=serializers.JSONField(), required=False, allow_null=True, default=None
        )

        def validate_datasets(self, value):
            resolved: dict[str, DatasetVersion] = {}
            for index, item in enumerate(value):
                entry = JobCreateApi.DatasetInput(data=item)
                if not entry.is_valid():
                    problems = "; ".join(
                        f"{k}: {' '.join(map(str, v))}" for k, v in entry.errors.items()
                    )
                    raise serializers.ValidationError(f"Dataset {index + 1}: {problems}")
                role = entry.validated_data["role"]
                if role in resolved:
                    raise serializers.ValidationError(f"The role {role} is given twice.")
                version = (
                    DatasetVersion.objects.filter(pk=entry.validated_data["dataset_version"])
                    .select_related("rule")
                    .first()
                )
                if version is None:
                    raise serializers.ValidationError(
                        f"Dataset version {entry.validated_data['dataset_version']} does not exist."
                    )
                resolved[role] = version
            return resolved

    @extend_schema(request=InputSerializer, responses={201: TrainingJobOutput})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        job = training_job_create(
            recipe=values["recipe"],
            base_model_version=values["base_model_version"],
            datasets=values["datasets"],
            params=values["params"],
            name=values["name"],
            launcher=values["launcher"],
            launch_options=values["launch_options"],
            evaluate=values["evaluate"],
            evaluation_prompt_set=values.get("evaluation_prompt_set"),
            evaluation_sources=values.get("evaluation_sources") or [],
            evaluation_seeds=values.get("evaluation_seeds"),
            requested_by=request.user,
        )
        job = selectors.training_job_list().get(pk=job.pk)
        return Response(TrainingJobOutput(job).data, status=status.HTTP_201_CREATED)


class JobCancelApi(APIView):
    permission_classes = [IsEngineer]

    @extend_schema(request=None, responses=TrainingJobOutput)
    def post(self, request, pk: int):
        job = training_job_cancel(
            job=get_object_or_404(TrainingJob, pk=pk), cancelled_by=request.user
        )
        return Response(TrainingJobOutput(job).data)


class JobResumeApi(APIView):
    """Queue a failed, cancelled or orphaned job again from its last checkpoint."""

    permission_classes = [IsEngineer]

    @extend_schema(request=None, responses=TrainingJobOutput)
    def post(self, request, pk: int):
        job = training_job_resume(
            job=get_object_or_404(TrainingJob, pk=pk), resumed_by=request.user
        )
        return Response(TrainingJobOutput(job).data)


class JobProgressReportApi(APIView):
    """Progress of an externally launched run: the JSON lines the recipe printed, as events
    (``{"events": [...], "log": ["line", ...]}``). Answers whether the run should go on."""

    permission_classes = [IsEngineer]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "TrainingJobProgressReportInput"

        events = serializers.ListField(child=serializers.JSONField(), allow_empty=True)
        log = serializers.ListField(
            child=serializers.CharField(allow_blank=True, trim_whitespace=False),
            required=False,
            default=list,
        )

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "TrainingJobProgressReportOutput"

        keep_running = serializers.BooleanField()
        status = serializers.CharField()
        step = serializers.IntegerField()

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request, pk: int):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = get_object_or_404(TrainingJob, pk=pk)
        keep = training_job_progress_report(
            job=job, events=data.validated_data["events"], log_lines=data.validated_data["log"]
        )
        job.refresh_from_db(fields=["status", "step"])
        return Response({"keep_running": keep, "status": job.status, "step": job.step})


class JobRegisterOutputApi(APIView):
    """Register a finished run's output folder as the job's new model version (idempotent)."""

    permission_classes = [IsEngineer]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "TrainingJobRegisterOutputInput"

        output_dir = serializers.CharField(max_length=1000, required=False, allow_blank=True)

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "TrainingJobRegisterOutputOutput"

        job = TrainingJobOutput()
        model_version = serializers.IntegerField()

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request, pk: int):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = training_job_register_output(
            job=get_object_or_404(TrainingJob, pk=pk),
            output_uri=data.validated_data.get("output_dir") or None,
            registered_by=request.user,
        )
        job = selectors.training_job_list().get(pk=pk)
        return Response({"job": TrainingJobOutput(job).data, "model_version": version.pk})


class JobLossesApi(APIView):
    """The stored losses of a job: one row per logged step and role."""

    permission_classes = [IsCuratorOrEngineer]

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "TrainingJobLossesOutput"

        step = serializers.IntegerField()
        role = serializers.CharField()
        loss = serializers.FloatField(allow_null=True)
        seconds_per_step = serializers.FloatField(allow_null=True)

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request, pk: int):
        job = get_object_or_404(TrainingJob, pk=pk)
        rows = selectors.training_job_losses(job=job).values(
            "step", "role", "loss", "seconds_per_step"
        )
        return Response(self.OutputSerializer(rows, many=True).data)


class JobProgressApi(APIView):
    """Live progress of the given jobs (``?ids=1,2,3``), polled by the job list page."""

    permission_classes = [IsCuratorOrEngineer]

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "TrainingJobProgressOutput"

        id = serializers.IntegerField()
        status = serializers.CharField()
        step = serializers.IntegerField()
        total_steps = serializers.IntegerField()
        last_loss = serializers.DictField()
        seconds_per_step = serializers.FloatField(allow_null=True)
        eta_seconds = serializers.FloatField(allow_null=True)
        error = serializers.CharField()
        evaluation_status = serializers.CharField(
            allow_null=True, help_text="The evaluation's status; null before it starts."
        )
        evaluation_error = serializers.CharField(
            allow_null=True, help_text="Why the evaluation was skipped or failed."
        )

    @extend_schema(
        parameters=[OpenApiParameter("ids", str, description="Comma-separated job ids")],
        responses=OutputSerializer(many=True),
    )
    def get(self, request):
        ids = ids_param(request)
        rows = selectors.training_job_progress(job_ids=ids)
        return Response(self.OutputSerializer(rows, many=True).data)


# Publishing a dataset version, with its rule's training trigger -------------------------------


class VersionPublishApi(APIView):
    """Publish a draft (curators); a rule's training trigger then creates its training job."""

    permission_classes = [IsCurator]

    @extend_schema(request=None, responses=VersionOutput)
    def post(self, request, pk: int):
        version = get_object_or_404(DatasetVersion, pk=pk)
        version = dataset_version_publish_and_train(version=version, published_by=request.user)
        return Response(VersionOutput(version).data)


class TriggerFireApi(APIView):
    """Fire a pending or failed training trigger again."""

    permission_classes = [IsCuratorOrEngineer]

    @extend_schema(request=None, responses=TriggerOutput)
    def post(self, request, pk: int):
        trigger = get_object_or_404(TrainingTrigger, pk=pk)
        trigger = training_trigger_fire(trigger=trigger)
        return Response(TriggerOutput(trigger).data)
