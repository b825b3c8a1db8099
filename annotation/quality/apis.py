"""Quality API: one class per operation. Tables answer JSON, or CSV with ``?format=csv``.

Reads (curators and engineers) come from stored results; writes (policy, gold, pauses) are for
curators; asking for a computation is open to engineers too (they evaluate their models).
"""

import csv
import io

from django.contrib.auth import get_user_model
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import Campaign, Item
from annotation.quality import selectors, services
from annotation.quality.models import AggregationRun, Method, QualityPolicy
from generation.models import Candidate
from stickerloop.roles import IsCurator, IsCuratorOrEngineer


class CSVRenderer(BaseRenderer):
    """Renders a list of flat dicts (the JSON rows) as CSV; nested values become JSON text."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        import json

        if isinstance(data, dict) and "rows" not in data:
            # An error answer (400, 403, 404) stays readable.
            data = [{"field": k, "problem": v} for k, v in data.items()]
        rows = data["rows"] if isinstance(data, dict) else data
        buffer = io.StringIO()
        if rows:
            writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            for row in rows:
                writer.writerow(
                    {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()}
                )
        return buffer.getvalue().encode(self.charset)


FORMAT = OpenApiParameter("format", str, enum=["json", "csv"], description="csv for a file")


class TableApi(APIView):
    """A read-only table: JSON by default, CSV with ``?format=csv``. Subclasses name their row
    shape in ``row_serializer`` for the schema."""

    row_serializer: type[serializers.Serializer] = serializers.Serializer

    permission_classes = [IsCuratorOrEngineer]
    renderer_classes = [JSONRenderer, CSVRenderer]
    filename = "table"

    def table(self, request, campaign: Campaign) -> list[dict]:
        raise NotImplementedError

    def get(self, request, pk: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        rows = self.table(request, campaign)
        response = Response(rows)
        if request.accepted_renderer.format == "csv":
            response["Content-Disposition"] = (
                f'attachment; filename="campaign-{campaign.pk}-{self.filename}.csv"'
            )
        return response


def _campaign(pk: int) -> Campaign:
    return get_object_or_404(Campaign, pk=pk)


# Policy ------------------------------------------------------------------------------------------


class PolicyOutput(serializers.ModelSerializer):
    class Meta:
        model = QualityPolicy
        fields = [
            "auto_pause",
            "min_gold_judgments",
            "min_gold_accuracy",
            "min_consensus_agreement",
            "min_consensus_judgments",
            "speed_floor_seconds",
            "max_fast_share",
            "min_speed_judgments",
            "consensus_method",
            "confidence_target",
            "qualification_campaign",
            "qualification_min_gold",
            "qualification_min_accuracy",
        ]


class PolicyApi(APIView):
    """A campaign's quality thresholds: read (curators, engineers), change (curators)."""

    def get_permissions(self):
        return [IsCuratorOrEngineer()] if self.request.method == "GET" else [IsCurator()]

    @extend_schema_serializer(component_name="QualityPolicyInput")
    class InputSerializer(serializers.Serializer):
        # Types only: ranges are checked by the service, which names the field and the range.
        auto_pause = serializers.BooleanField(required=False)
        min_gold_judgments = serializers.IntegerField(required=False)
        min_gold_accuracy = serializers.FloatField(required=False)
        min_consensus_agreement = serializers.FloatField(required=False, allow_null=True)
        min_consensus_judgments = serializers.IntegerField(required=False)
        speed_floor_seconds = serializers.FloatField(required=False)
        max_fast_share = serializers.FloatField(required=False)
        min_speed_judgments = serializers.IntegerField(required=False)
        consensus_method = serializers.CharField(required=False)
        confidence_target = serializers.FloatField(required=False)
        qualification_campaign = serializers.PrimaryKeyRelatedField(
            queryset=Campaign.objects.all(), required=False, allow_null=True
        )
        qualification_min_gold = serializers.IntegerField(required=False)
        qualification_min_accuracy = serializers.FloatField(required=False)

    @extend_schema(responses=PolicyOutput)
    def get(self, request, pk: int):
        return Response(PolicyOutput(selectors.policy_for(_campaign(pk))).data)

    @extend_schema(request=InputSerializer, responses=PolicyOutput)
    def patch(self, request, pk: int):
        campaign = _campaign(pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        policy = services.quality_policy_set(campaign=campaign, **data.validated_data)
        return Response(PolicyOutput(policy).data)


# Computations ------------------------------------------------------------------------------------


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
        campaign = _campaign(pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run = services.aggregation_run_request(
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


# Tables ------------------------------------------------------------------------------------------


@extend_schema_serializer(component_name="QualityAgreementRow")
class AgreementRow(serializers.Serializer):
    question_key = serializers.CharField()
    level = serializers.CharField()
    alpha = serializers.FloatField(allow_null=True)
    alpha_interval = serializers.FloatField(allow_null=True)
    fleiss_kappa = serializers.FloatField(allow_null=True)
    fleiss_reason = serializers.CharField()
    observed_agreement = serializers.FloatField(allow_null=True)
    n_items = serializers.IntegerField()
    n_judgments = serializers.IntegerField()
    n_raters = serializers.IntegerField()
    distribution = serializers.JSONField()
    computed_at = serializers.DateTimeField()


class AgreementApi(TableApi):
    """Agreement per question: Krippendorff's alpha at the question's level (interval alpha too
    for scales), Fleiss' kappa where every item has the same number of judgments."""

    filename = "agreement"
    row_serializer = AgreementRow

    @extend_schema(parameters=[FORMAT], responses=AgreementRow(many=True))
    def get(self, request, pk: int):
        return super().get(request, pk)

    def table(self, request, campaign):
        return [
            {
                "question_key": a.question_key,
                "level": a.level,
                "alpha": a.alpha,
                "alpha_interval": a.alpha_interval,
                "fleiss_kappa": a.fleiss_kappa,
                "fleiss_reason": a.fleiss_reason,
                "observed_agreement": a.observed_agreement,
                "n_items": a.n_items,
                "n_judgments": a.n_judgments,
                "n_raters": a.n_raters,
                "distribution": a.distribution,
                "computed_at": a.computed_at.isoformat(),
            }
            for a in selectors.agreement_results(campaign=campaign)
        ]


@extend_schema_serializer(component_name="QualityResultRow")
class ResultRow(serializers.Serializer):
    question_key = serializers.CharField()
    method = serializers.CharField()
    n_items = serializers.IntegerField()
    n_judgments = serializers.IntegerField()
    n_ties = serializers.IntegerField()
    mean_confidence = serializers.FloatField(allow_null=True)
    gold_accuracy = serializers.FloatField(allow_null=True)
    n_gold_items = serializers.IntegerField()
    confidence_histogram = serializers.ListField(child=serializers.IntegerField())
    computed_at = serializers.DateTimeField()


class ResultsApi(TableApi):
    """Per question and consensus method: ties, mean confidence, gold accuracy, histogram."""

    filename = "results"
    row_serializer = ResultRow

    @extend_schema(parameters=[FORMAT], responses=ResultRow(many=True))
    def get(self, request, pk: int):
        return super().get(request, pk)

    def table(self, request, campaign):
        return [
            {
                "question_key": r.question_key,
                "method": r.method,
                "n_items": r.n_items,
                "n_judgments": r.n_judgments,
                "n_ties": r.n_ties,
                "mean_confidence": r.mean_confidence,
                "gold_accuracy": r.gold_accuracy,
                "n_gold_items": r.n_gold_items,
                "confidence_histogram": r.confidence_histogram,
                "computed_at": r.computed_at.isoformat(),
            }
            for r in selectors.question_results(campaign=campaign)
        ]


@extend_schema_serializer(component_name="QualityConsensusRow")
class ConsensusRow(serializers.Serializer):
    item = serializers.IntegerField()
    candidate = serializers.IntegerField(allow_null=True)
    question_key = serializers.CharField()
    method = serializers.CharField()
    label = serializers.JSONField(allow_null=True)
    confidence = serializers.FloatField()
    n_judgments = serializers.IntegerField()
    is_tie = serializers.BooleanField()
    tied_labels = serializers.JSONField()
    mean = serializers.FloatField(allow_null=True)
    median = serializers.FloatField(allow_null=True)


class ConsensusApi(TableApi):
    """Consensus per item for one question and method (stored, else computed now)."""

    filename = "consensus"
    row_serializer = ConsensusRow

    @extend_schema_serializer(component_name="QualityConsensusFilter")
    class FilterSerializer(serializers.Serializer):
        question_key = serializers.CharField()
        method = serializers.CharField(default="majority")
        offset = serializers.IntegerField(min_value=0, default=0)
        limit = serializers.IntegerField(min_value=1, required=False)

    @extend_schema(
        parameters=[
            OpenApiParameter("question_key", str, required=True),
            OpenApiParameter("method", str),
            OpenApiParameter("offset", int, description="Rows to skip (items by id)."),
            OpenApiParameter("limit", int, description="At most this many rows."),
            FORMAT,
        ],
        responses=ConsensusRow(many=True),
    )
    def get(self, request, pk: int):
        return super().get(request, pk)

    def table(self, request, campaign):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        key, method = filters.validated_data["question_key"], filters.validated_data["method"]
        offset, limit = filters.validated_data["offset"], filters.validated_data.get("limit")
        question = selectors.question_of(campaign, key)
        if question.get("per_candidate"):
            found = selectors.item_candidate_consensus(
                campaign_id=campaign.pk, question_key=key, method=method
            )
            keyed = [((item, candidate), c) for (item, candidate), c in sorted(found.items())]
        else:
            found = selectors.item_consensus(
                campaign_id=campaign.pk, question_key=key, method=method
            )
            keyed = [((item, None), c) for item, c in sorted(found.items())]
        return [
            {
                "item": item,
                "candidate": candidate,
                "question_key": key,
                "method": method,
                "label": c.label,
                "confidence": round(c.confidence, 6),
                "n_judgments": c.n_judgments,
                "is_tie": c.is_tie,
                "tied_labels": list(c.tied_labels),
                "mean": c.mean,
                "median": c.median,
            }
            for (item, candidate), c in keyed[offset : offset + limit if limit else None]
        ]


@extend_schema_serializer(component_name="QualityRaterRow")
class RaterRow(serializers.Serializer):
    rater_id = serializers.IntegerField()
    username = serializers.CharField()
    status = serializers.CharField()
    paused_reason = serializers.CharField()
    paused_at = serializers.DateTimeField(allow_null=True)
    n_judgments = serializers.IntegerField()
    n_gold = serializers.IntegerField()
    gold_accuracy = serializers.FloatField(allow_null=True)
    consensus_agreement = serializers.FloatField(allow_null=True)
    n_consensus = serializers.IntegerField()
    median_seconds = serializers.FloatField(allow_null=True)
    fast_share = serializers.FloatField(allow_null=True)
    reliability = serializers.JSONField()
    computed_at = serializers.DateTimeField(allow_null=True)


class RaterTableApi(TableApi):
    """Rater quality in the campaign, with membership state and why a rater is paused."""

    filename = "raters"
    row_serializer = RaterRow

    @extend_schema(parameters=[FORMAT], responses=RaterRow(many=True))
    def get(self, request, pk: int):
        return super().get(request, pk)

    def table(self, request, campaign):
        return [
            {
                **row,
                "paused_at": row["paused_at"].isoformat() if row["paused_at"] else None,
                "computed_at": row["computed_at"].isoformat() if row["computed_at"] else None,
            }
            for row in selectors.rater_table(campaign=campaign)
        ]


@extend_schema_serializer(component_name="QualityRankingRow")
class RankingRow(serializers.Serializer):
    question_key = serializers.CharField()
    method = serializers.CharField()
    rank = serializers.IntegerField()
    model_version = serializers.CharField()
    model_version_id = serializers.IntegerField()
    strength = serializers.FloatField()
    ci_low = serializers.FloatField()
    ci_high = serializers.FloatField()
    score = serializers.FloatField()
    score_ci_low = serializers.FloatField()
    score_ci_high = serializers.FloatField()
    wins = serializers.IntegerField()
    losses = serializers.IntegerField()
    ties = serializers.IntegerField()
    n_bootstrap = serializers.IntegerField()


class RankingApi(TableApi):
    """Pair campaigns: Bradley–Terry strengths with bootstrap 95% intervals per question;
    ``?table=pairs`` gives win/tie/loss per model pair, ``?table=bias`` the position bias."""

    filename = "rankings"
    row_serializer = RankingRow

    @extend_schema(
        parameters=[OpenApiParameter("table", str, enum=["models", "pairs", "bias"]), FORMAT],
        responses=RankingRow(many=True),
    )
    def get(self, request, pk: int):
        return super().get(request, pk)

    def table(self, request, campaign):
        which = request.query_params.get("table", "models")
        if which not in ("models", "pairs", "bias"):
            raise serializers.ValidationError({"table": "Use models, pairs or bias."})
        rows = []
        for ranking in selectors.ranking_results(campaign=campaign):
            common = {"question_key": ranking.question_key, "method": ranking.method}
            if which == "bias":
                rows.append(
                    {
                        **common,
                        "n_comparisons": ranking.n_comparisons,
                        "left_win_share": ranking.left_win_share,
                        "left_win_share_decisive": ranking.left_win_share_decisive,
                        "tie_share": ranking.tie_share,
                        "computed_at": ranking.computed_at.isoformat(),
                    }
                )
            elif which == "pairs":
                rows += [{**common, **pair} for pair in ranking.pairs]
            else:
                rows += [
                    {
                        **common,
                        "rank": s.rank,
                        "model_version": s.model_version.name,
                        "model_version_id": s.model_version_id,
                        "strength": s.strength,
                        "ci_low": s.ci_low,
                        "ci_high": s.ci_high,
                        "score": s.score,
                        "score_ci_low": s.score_ci_low,
                        "score_ci_high": s.score_ci_high,
                        "wins": s.wins,
                        "losses": s.losses,
                        "ties": s.ties,
                        "n_bootstrap": ranking.n_bootstrap,
                    }
                    for s in ranking.strengths.all()
                ]
        return rows


# Raters ------------------------------------------------------------------------------------------


class EventOutput(serializers.Serializer):
    action = serializers.CharField()
    cause = serializers.CharField()
    reason = serializers.CharField()
    excluded_judgments = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class RaterPauseApi(APIView):
    """Pause a rater in the campaign; with ``exclude`` (default) their judgments since their
    last resume stop counting."""

    permission_classes = [IsCurator]

    @extend_schema_serializer(component_name="QualityRaterPauseInput")
    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=500)
        exclude = serializers.BooleanField(default=True)

    @extend_schema(request=InputSerializer, responses=EventOutput)
    def post(self, request, pk: int, rater_id: int):
        campaign = _campaign(pk)
        get_object_or_404(get_user_model(), pk=rater_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        event = services.rater_pause(
            campaign=campaign, rater_id=rater_id, actor=request.user, **data.validated_data
        )
        return Response(EventOutput(event).data)


class RaterResumeApi(APIView):
    """Resume a paused rater; the judgments their pause excluded count again."""

    permission_classes = [IsCurator]

    @extend_schema_serializer(component_name="QualityRaterResumeInput")
    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)

    @extend_schema(request=InputSerializer, responses=EventOutput)
    def post(self, request, pk: int, rater_id: int):
        campaign = _campaign(pk)
        get_object_or_404(get_user_model(), pk=rater_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        event = services.rater_resume(
            campaign=campaign,
            rater_id=rater_id,
            actor=request.user,
            reason=data.validated_data["reason"],
        )
        return Response(EventOutput(event).data)


# Gold --------------------------------------------------------------------------------------------


class GoldItemOutput(serializers.ModelSerializer):
    candidates = serializers.SerializerMethodField()

    class Meta:
        model = Item
        fields = ["id", "campaign", "is_gold", "gold_answers", "candidates"]

    def get_candidates(self, item: Item) -> list[int]:
        return item.candidate_ids_in_order()


class GoldSetApi(APIView):
    """Mark an item of the campaign gold with its known answers (or change them)."""

    permission_classes = [IsCurator]

    @extend_schema_serializer(component_name="QualityGoldSetInput")
    class InputSerializer(serializers.Serializer):
        item = serializers.IntegerField()
        gold_answers = serializers.JSONField()

    @extend_schema(request=InputSerializer, responses=GoldItemOutput)
    def post(self, request, pk: int):
        campaign = _campaign(pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        item = Item.objects.filter(campaign=campaign, pk=data.validated_data["item"]).first()
        if item is None:
            raise serializers.ValidationError(
                {"item": f"Campaign {campaign.pk} has no item {data.validated_data['item']}."}
            )
        item = services.item_gold_set(item=item, gold_answers=data.validated_data["gold_answers"])
        return Response(GoldItemOutput(item).data)


class GoldUnsetApi(APIView):
    permission_classes = [IsCurator]

    @extend_schema(request=None, responses=GoldItemOutput)
    def post(self, request, pk: int, item_id: int):
        item = get_object_or_404(Item, campaign_id=pk, pk=item_id)
        return Response(GoldItemOutput(services.item_gold_unset(item=item)).data)


class GoldAddApi(APIView):
    """New gold items from candidates with known answers (one answer set per group)."""

    permission_classes = [IsCurator]

    @extend_schema_serializer(component_name="QualityGoldAddInput")
    class InputSerializer(serializers.Serializer):
        candidate_groups = serializers.ListField(
            child=serializers.ListField(child=serializers.IntegerField(), allow_empty=False),
            allow_empty=False,
        )
        gold_answers = serializers.ListField(child=serializers.JSONField(), allow_empty=False)
        seed = serializers.IntegerField(required=False, allow_null=True, default=None)

    @extend_schema(request=InputSerializer, responses={201: GoldItemOutput(many=True)})
    def post(self, request, pk: int):
        campaign = _campaign(pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        groups = data.validated_data["candidate_groups"]
        found = Candidate.objects.in_bulk({c for g in groups for c in g})
        missing = sorted({c for g in groups for c in g} - set(found))
        if missing:
            raise serializers.ValidationError(
                {"candidate_groups": f"Unknown candidate(s) {', '.join(map(str, missing[:10]))}."}
            )
        items = services.gold_items_add(
            campaign=campaign,
            candidate_groups=[[found[c] for c in g] for g in groups],
            gold_answers=data.validated_data["gold_answers"],
            seed=data.validated_data["seed"],
        )
        return Response(GoldItemOutput(items, many=True).data, status=status.HTTP_201_CREATED)


class GoldPromoteApi(APIView):
    """Make items gold whose stored consensus is near-certain."""

    permission_classes = [IsCurator]

    @extend_schema_serializer(component_name="QualityGoldPromoteInput")
    class InputSerializer(serializers.Serializer):
        question_key = serializers.CharField()
        method = serializers.CharField(default="majority")
        min_confidence = serializers.FloatField(default=0.9)
        min_judgments = serializers.IntegerField(default=3)
        limit = serializers.IntegerField(required=False, allow_null=True, default=None)

    @extend_schema_serializer(component_name="QualityGoldPromoteOutput")
    class OutputSerializer(serializers.Serializer):
        promoted = serializers.ListField(child=serializers.IntegerField())

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request, pk: int):
        campaign = _campaign(pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        ids = services.gold_items_promote(campaign=campaign, **data.validated_data)
        return Response({"promoted": ids})
