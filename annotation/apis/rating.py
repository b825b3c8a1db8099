"""Rating API for raters: the rating step, next, submit, skip, undo, held items, the rating
configuration, their campaigns and a ping. One class per operation."""

import uuid

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import selectors
from annotation.models import (
    Campaign,
    CampaignMembership,
    Item,
)
from annotation.rating_config import rating_config
from annotation.services.rating import (
    Submission,
    answers_shown,
    item_skip,
    judgment_undo,
    rating_step,
)


class CandidateShown(serializers.Serializer):
    position = serializers.IntegerField(
        help_text="Display order from 0, shuffled per item; answers name the candidate by it."
    )
    side = serializers.CharField()
    kind = serializers.CharField()
    url = serializers.CharField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    frame_count = serializers.IntegerField()
    prompt = serializers.CharField(
        help_text="The prompt the campaign shows (rater_prompt): as written by default, or "
        "enhanced (as written where the candidate has no enhanced prompt)."
    )
    motion_prompt = serializers.CharField()
    fps = serializers.IntegerField(allow_null=True)
    frames = serializers.ListField(
        child=serializers.CharField(), help_text="An animation's frames, one URL each."
    )
    strip_url = serializers.CharField(
        help_text="An animation's frames side by side in one image (frame i at x = i × width): "
        "what the rating screen shows. Empty for a sticker or an animation without frames."
    )
    source_url = serializers.CharField()


class ItemShown(serializers.Serializer):
    id = serializers.IntegerField()
    candidates = CandidateShown(many=True)


class JudgmentOutput(serializers.Serializer):
    id = serializers.IntegerField()
    item = serializers.IntegerField(source="item_id")
    client_id = serializers.UUIDField()
    answers = serializers.JSONField()
    skipped = serializers.BooleanField()
    skip_reason = serializers.CharField()
    seconds_on_item = serializers.FloatField()
    created_at = serializers.DateTimeField()


def _judgment_data(judgment, answers: dict) -> dict:
    """``answers``: as the rater names candidates (``StepResult.answers_shown``)."""
    # Built by hand: this runs on every judgment, and the serializer costs 0.2 ms a call.
    return {
        "id": judgment.pk,
        "item": judgment.item_id,
        "client_id": str(judgment.client_id),
        "answers": answers,
        "skipped": judgment.skipped,
        "skip_reason": judgment.skip_reason,
        "seconds_on_item": judgment.seconds_on_item,
        "created_at": judgment.created_at.isoformat().replace("+00:00", "Z"),
    }


def _config_or_404(pk: int):
    config = selectors.campaign_config(pk)
    if config is None:
        raise Http404("No such campaign.")
    return config


def _member_config(pk: int, user):
    """The campaign's config for one of its raters: 404 for no such campaign, 403 (the project's
    exception handler turns PermissionDenied into it) for a caller outside it."""
    config = _config_or_404(pk)
    if not CampaignMembership.objects.filter(campaign_id=config.id, rater=user).exists():
        raise PermissionDenied(f"You are not a rater of campaign {config.name!r}.")
    return config


class SubmissionInput(serializers.Serializer):
    item = serializers.IntegerField()
    client_id = serializers.UUIDField()
    seconds_on_item = serializers.FloatField(min_value=0)
    answers = serializers.JSONField(required=False, default=dict)
    skipped = serializers.BooleanField(required=False, default=False)
    skip_reason = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=200
    )

    def to_submission(self) -> Submission:
        return submission_from(self.validated_data)


def submission_from(v: dict) -> Submission:
    return Submission(
        item_id=v["item"],
        client_id=v["client_id"],
        seconds_on_item=v["seconds_on_item"],
        answers=v["answers"],
        skipped=v["skipped"],
        skip_reason=v["skip_reason"],
    )


def _int_field(value, name: str, errors: dict, *, low: int | None = None, high: int | None = None):
    if isinstance(value, bool) or not isinstance(value, int):
        errors[name] = ["A valid integer is required."]
    elif low is not None and value < low:
        errors[name] = [f"Ensure this value is greater than or equal to {low}."]
    elif high is not None and value > high:
        errors[name] = [f"Ensure this value is less than or equal to {high}."]
    return value


def parse_step_input(data) -> tuple[Submission | None, int]:
    """``RatingStepApi.InputSerializer`` checked by hand, with the same messages.

    The step runs on every judgment; building the nested serializers cost 0.35 ms of the
    request's 2 ms of Python (they deep-copy their fields per instance), so the hot path checks
    the few fields itself. The serializers stay the documented shape of the request.
    """
    if not isinstance(data, dict):
        raise ValidationError({"non_field_errors": ["Send a JSON object."]})
    errors: dict[str, list[str]] = {}
    fetch = _int_field(data.get("fetch", 1), "fetch", errors, low=0, high=10)
    submit = data.get("submit")
    submission = None
    if submit is not None and not isinstance(submit, dict):
        errors["submit"] = ["Must be an object."]
    elif submit is not None:
        item = _int_field(submit.get("item"), "submit.item", errors)
        try:
            client_id = uuid.UUID(str(submit.get("client_id")))
        except ValueError:
            errors["submit.client_id"] = ["Must be a valid UUID."]
        seconds = submit.get("seconds_on_item")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            errors["submit.seconds_on_item"] = ["A number of at least 0 is required."]
        skipped = submit.get("skipped", False)
        if not isinstance(skipped, bool):
            errors["submit.skipped"] = ["Must be a valid boolean."]
        reason = submit.get("skip_reason", "")
        if not isinstance(reason, str) or len(reason) > 200:
            errors["submit.skip_reason"] = ["Must be text of at most 200 characters."]
        if not errors:
            submission = Submission(
                item_id=item,
                client_id=client_id,
                seconds_on_item=float(seconds),
                answers=submit.get("answers") or {},
                skipped=skipped,
                skip_reason=reason,
            )
    if errors:
        raise ValidationError(errors)
    return submission, fetch


class RatingStepApi(APIView):
    """The rating screen's call: submit the current item (optional) and lease ``fetch`` more.

    A retried submit (same ``client_id``) returns the stored judgment with ``replayed: true``.
    400 names the question and the problem; 403 for a campaign the rater is not in, a paused
    rater, or an item without a lease; 409 for a closed campaign. Nothing is stored on error.
    """

    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        submit = SubmissionInput(required=False, allow_null=True)
        fetch = serializers.IntegerField(required=False, default=1, min_value=0, max_value=10)

    class OutputSerializer(serializers.Serializer):
        judgment = JudgmentOutput(allow_null=True)
        replayed = serializers.BooleanField()
        items = ItemShown(many=True)
        campaign_status = serializers.CharField()
        message = serializers.CharField()

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request, pk: int):
        config = _config_or_404(pk)
        submission, fetch = parse_step_input(request.data)
        result = rating_step(
            campaign_id=config.id, rater=request.user, submission=submission, fetch=fetch
        )
        return Response(
            {
                "judgment": _judgment_data(result.judgment, result.answers_shown)
                if result.judgment
                else None,
                "replayed": result.replayed,
                "items": selectors.item_payloads(
                    item_ids=result.item_ids,
                    rater_id=request.user.pk,
                    rater_prompt=config.rater_prompt,
                    rows=result.rows,
                ),
                "campaign_status": result.campaign_status,
                "message": result.message,
            }
        )


class ItemNextApi(APIView):
    """Lease up to ``count`` items the rater has never seen, closest to completion first."""

    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        count = serializers.IntegerField(required=False, default=1, min_value=1, max_value=10)

    class OutputSerializer(serializers.Serializer):
        items = ItemShown(many=True)

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request, pk: int):
        config = _config_or_404(pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = rating_step(
            campaign_id=config.id, rater=request.user, fetch=data.validated_data["count"]
        )
        return Response(
            {
                "items": selectors.item_payloads(
                    item_ids=result.item_ids,
                    rater_id=request.user.pk,
                    rater_prompt=config.rater_prompt,
                    rows=result.rows,
                )
            }
        )


class JudgmentSubmitApi(APIView):
    """Submit answers for a leased item (a retried client id returns the stored judgment)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(request=SubmissionInput, responses={201: JudgmentOutput, 200: JudgmentOutput})
    def post(self, request, pk: int):
        config = _config_or_404(pk)
        data = SubmissionInput(data=request.data)
        data.is_valid(raise_exception=True)
        result = rating_step(
            campaign_id=config.id, rater=request.user, submission=data.to_submission()
        )
        return Response(
            _judgment_data(result.judgment, result.answers_shown),
            status=status.HTTP_200_OK if result.replayed else status.HTTP_201_CREATED,
        )


class ItemSkipApi(APIView):
    """Skip a leased item with a reason; the item goes to other raters."""

    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        item = serializers.IntegerField()
        client_id = serializers.UUIDField()
        reason = serializers.CharField(max_length=200)
        seconds_on_item = serializers.FloatField(required=False, default=0.0, min_value=0)

    @extend_schema(request=InputSerializer, responses={201: JudgmentOutput})
    def post(self, request, pk: int):
        config = _config_or_404(pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        item = get_object_or_404(Item, pk=v["item"], campaign_id=pk)
        judgment = item_skip(
            item=item,
            rater=request.user,
            reason=v["reason"],
            client_id=v["client_id"],
            seconds_on_item=v["seconds_on_item"],
        )
        shown = answers_shown(config=config, item_id=item.pk, answers=judgment.answers)
        return Response(_judgment_data(judgment, shown), status=status.HTTP_201_CREATED)


class JudgmentUndoApi(APIView):
    """Take back the rater's last judgment (within the undo window); the item is leased again."""

    permission_classes = [IsAuthenticated]

    class OutputSerializer(serializers.Serializer):
        item = ItemShown()
        answers = serializers.JSONField()
        skipped = serializers.BooleanField()
        skip_reason = serializers.CharField()

    @extend_schema(request=None, responses=OutputSerializer)
    def post(self, request, pk: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        undone = judgment_undo(campaign=campaign, rater=request.user)
        [item] = selectors.item_payloads(
            item_ids=[undone.item_id], rater_id=request.user.pk, rater_prompt=campaign.rater_prompt
        )
        return Response(
            {
                "item": item,
                "answers": undone.answers,
                "skipped": undone.skipped,
                "skip_reason": undone.skip_reason,
            }
        )


class RatingConfigApi(APIView):
    """What the rating screen's page tells its script, for a client rating with an API token:
    the campaign, the caller's membership, the question schema, how many items to keep leased
    ahead, the undo window and the endpoints. 403 for a caller outside the campaign."""

    permission_classes = [IsAuthenticated]

    class OutputSerializer(serializers.Serializer):
        campaign = serializers.DictField(
            help_text="id, name, kind, status and rater_prompt (the prompt shown: raw or enhanced)."
        )
        membership = serializers.DictField(help_text="The caller's status and pause reason.")
        schema = serializers.ListField(
            child=serializers.DictField(), help_text="The questions (see the campaign's schema)."
        )
        user = serializers.CharField()
        prefetch = serializers.IntegerField(help_text="Items to keep leased ahead of the shown.")
        undo_seconds = serializers.IntegerField()
        urls = serializers.DictField(child=serializers.CharField())

    @extend_schema(responses=OutputSerializer)
    def get(self, request, pk: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        membership = CampaignMembership.objects.filter(
            campaign=campaign, rater=request.user
        ).first()
        if membership is None:
            return Response(
                {"detail": f"You are not a rater of campaign {campaign.name!r}."},
                status=status.HTTP_403_FORBIDDEN,
            )
        return Response(
            rating_config(
                campaign=campaign, membership=membership, username=request.user.get_username()
            )
        )


class ItemsHeldApi(APIView):
    """The items the rater holds leases on (the rating screen resumes with them on load)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=ItemNextApi.OutputSerializer)
    def get(self, request, pk: int):
        config = _member_config(pk, request.user)
        ids = selectors.items_held(campaign_id=config.id, rater_id=request.user.pk)
        items = selectors.item_payloads(
            item_ids=ids, rater_id=request.user.pk, rater_prompt=config.rater_prompt
        )
        return Response({"items": items})


class RaterProgressApi(APIView):
    """The caller's counters in a campaign, as the rating screen shows them: judged today and in
    total, items left for them, and the campaign's progress. 403 for a caller outside it."""

    permission_classes = [IsAuthenticated]

    class OutputSerializer(serializers.Serializer):
        class CampaignProgress(serializers.Serializer):
            items = serializers.IntegerField(help_text="Items, gold checks left out.")
            items_done = serializers.IntegerField(help_text="Items with all their judgments.")
            percent_done = serializers.FloatField()

        judged_today = serializers.IntegerField(help_text="Your judgments today, skips left out.")
        judged_total = serializers.IntegerField(help_text="Your judgments here, skips left out.")
        skipped_total = serializers.IntegerField()
        left = serializers.IntegerField(
            help_text="Items you can still be given: those you hold and the open ones you have "
            "never seen (gold checks not counted), counted up to 1000."
        )
        left_capped = serializers.BooleanField(help_text="More items are left than ``left``.")
        campaign = CampaignProgress()

    @extend_schema(responses=OutputSerializer)
    def get(self, request, pk: int):
        config = _member_config(pk, request.user)
        return Response(selectors.rater_progress(campaign_id=config.id, rater_id=request.user.pk))


class RaterCampaignListApi(APIView):
    """The campaigns open to the caller, with their own judgments today and the items left for
    them (counted as on the rating screen, up to a cap: ``left_capped`` says there are more)."""

    permission_classes = [IsAuthenticated]

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        name = serializers.CharField()
        kind = serializers.CharField()
        status = serializers.CharField()
        membership = serializers.CharField()
        can_rate = serializers.BooleanField()
        judged_today = serializers.IntegerField()
        skipped_today = serializers.IntegerField()
        left = serializers.IntegerField()
        left_capped = serializers.BooleanField()

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request):
        rows = [
            {
                "id": r["campaign"].pk,
                "name": r["campaign"].name,
                "kind": r["campaign"].kind,
                "status": r["campaign"].status,
                "membership": r["membership"].status,
                "can_rate": r["can_rate"],
                "judged_today": r["judged_today"],
                "skipped_today": r["skipped_today"],
                "left": r["left"],
                "left_capped": r["left_capped"],
            }
            for r in selectors.rater_campaigns(rater=request.user)
        ]
        return Response(self.OutputSerializer(rows, many=True).data)


class PingApi(APIView):
    """Any signed-in caller: answers at once. The rating screen uses it to notice that the
    network is back; the assignment benchmark uses it as its floor."""

    permission_classes = [IsAuthenticated]

    class OutputSerializer(serializers.Serializer):
        ok = serializers.BooleanField()

    @extend_schema(responses=OutputSerializer)
    def get(self, request):
        return Response({"ok": True})
