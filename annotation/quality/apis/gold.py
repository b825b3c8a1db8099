"""Gold items: mark, unmark, add and promote, for curators."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import Campaign, Item
from annotation.quality.services.gold import (
    gold_items_add,
    gold_items_promote,
    item_gold_set,
    item_gold_unset,
)
from generation.models import Candidate
from stickerloop.roles import IsCurator


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
        campaign = get_object_or_404(Campaign, pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        item = Item.objects.filter(campaign=campaign, pk=data.validated_data["item"]).first()
        if item is None:
            raise serializers.ValidationError(
                {"item": f"Campaign {campaign.pk} has no item {data.validated_data['item']}."}
            )
        item = item_gold_set(item=item, gold_answers=data.validated_data["gold_answers"])
        return Response(GoldItemOutput(item).data)


class GoldUnsetApi(APIView):
    permission_classes = [IsCurator]

    @extend_schema(request=None, responses=GoldItemOutput)
    def post(self, request, pk: int, item_id: int):
        item = get_object_or_404(Item, campaign_id=pk, pk=item_id)
        return Response(GoldItemOutput(item_gold_unset(item=item)).data)


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
        campaign = get_object_or_404(Campaign, pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        groups = data.validated_data["candidate_groups"]
        found = Candidate.objects.in_bulk({c for g in groups for c in g})
        missing = sorted({c for g in groups for c in g} - set(found))
        if missing:
            raise serializers.ValidationError(
                {"candidate_groups": f"Unknown candidate(s) {', '.join(map(str, missing[:10]))}."}
            )
        items = gold_items_add(
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
        campaign = get_object_or_404(Campaign, pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        ids = gold_items_promote(campaign=campaign, **data.validated_data)
        return Response({"promoted": ids})
