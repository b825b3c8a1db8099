"""Quality tables: agreement, results, consensus, raters and rankings, as JSON or, with
``?format=csv``, as a file. Curators and engineers read them."""

import csv
import io

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import (
    OpenApiParameter,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import Campaign
from annotation.quality import selectors
from stickerloop.ids import MAX_ID
from stickerloop.roles import IsCuratorOrEngineer


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
        # An empty table is its header line: a CSV answer is never empty (an empty body would
        # go without its Content-Type).
        row_serializer = getattr((renderer_context or {}).get("view"), "row_serializer", None)
        if rows:
            fieldnames = list(rows[0])
        else:
            fieldnames = list(row_serializer().fields) if row_serializer else []
        buffer = io.StringIO()
        if fieldnames:
            writer = csv.DictWriter(buffer, fieldnames=fieldnames, lineterminator="\n")
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


@extend_schema_serializer(component_name="QualityAgreementRow")
class AgreementRow(serializers.Serializer):
    question_key = serializers.CharField()
    level = serializers.CharField()
    alpha = serializers.FloatField(allow_null=True)
    alpha_interval = serializers.FloatField(allow_null=True)
    fleiss_kappa = serializers.FloatField(allow_null=True)
    fleiss_reason = serializers.CharField()
    observed_agreement = serializers.FloatField(
        allow_null=True,
        help_text="Pairs agreeing: over items with two or more judgments, the share of rater "
        "pairs who gave the same answer.",
    )
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
        # No table has more rows than ids: a larger number would only overflow the driver.
        offset = serializers.IntegerField(min_value=0, max_value=MAX_ID, default=0)
        limit = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False)

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
    consensus_agreement = serializers.FloatField(
        allow_null=True,
        help_text="Agreement with the other raters: over the rater's judgments of items others "
        "judged too, the share of those others who gave the same answer (all questions).",
    )
    n_consensus = serializers.IntegerField(help_text="The judgments that agreement counts.")
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


@extend_schema_serializer(component_name="QualityRankingPairRow")
class RankingPairRow(serializers.Serializer):
    question_key = serializers.CharField()
    method = serializers.CharField()
    a = serializers.CharField()
    a_id = serializers.IntegerField()
    b = serializers.CharField()
    b_id = serializers.IntegerField()
    a_wins = serializers.IntegerField()
    b_wins = serializers.IntegerField()
    ties = serializers.IntegerField()
    a_win_rate = serializers.FloatField()


@extend_schema_serializer(component_name="QualityRankingBiasRow")
class RankingBiasRow(serializers.Serializer):
    question_key = serializers.CharField()
    method = serializers.CharField()
    n_comparisons = serializers.IntegerField()
    left_win_share = serializers.FloatField(allow_null=True)
    left_win_share_decisive = serializers.FloatField(allow_null=True)
    tie_share = serializers.FloatField(allow_null=True)
    computed_at = serializers.DateTimeField()


class RankingApi(TableApi):
    """Pair campaigns: Bradley–Terry strengths with bootstrap 95% intervals per question;
    ``?table=pairs`` gives win/tie/loss per model pair, ``?table=bias`` the position bias."""

    filename = "rankings"
    row_serializer = RankingRow

    @extend_schema(
        parameters=[OpenApiParameter("table", str, enum=["models", "pairs", "bias"]), FORMAT],
        responses=PolymorphicProxySerializer(
            component_name="QualityRankingTable",
            serializers=[RankingRow, RankingPairRow, RankingBiasRow],
            resource_type_field_name=None,
            many=True,
        ),
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
