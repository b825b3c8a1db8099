"""Curator page forms for dataset rules. They parse input only: the rule service checks the
settings against the source campaigns' questions and writes (``training_bridge.rules``)."""

import json

from django import forms
from django.forms.utils import pretty_name

from annotation.models import Campaign, CampaignKind
from annotation.quality.aggregation import ALL_METHODS, MAJORITY
from annotation.quality.selectors import is_pick_question
from stickerloop.input_checks import InputProblem, json_loads_checked
from training_bridge.curation import is_pick_condition
from training_bridge.models import (
    CaptionSource,
    DatasetKind,
    DatasetPurpose,
    DatasetRule,
    WeakSource,
)
from training_bridge.rules import (
    CONDITION_TYPES,
    MAX_CONDITIONS,
    PICK_CONDITION_KEYS,
    SOURCE_CAMPAIGN_KINDS,
)

KEEP_ANSWERS, KEEP_PICK = "answers", "pick"
ANSWER_FIELDS = ("labels", "min_confidence", "min_mean", "max_mean")
PICK_FIELDS = PICK_CONDITION_KEYS[1:]
# Campaigns a rule may take: pair campaigns through pick conditions.
RULE_CAMPAIGN_KINDS = (*SOURCE_CAMPAIGN_KINDS, CampaignKind.PAIR)


def _json_field(text: str, *, empty):
    text = text.strip()
    if not text:
        return empty
    try:
        return json_loads_checked(text)
    except json.JSONDecodeError as exc:
        raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}).") from exc
    except InputProblem as exc:
        raise forms.ValidationError(str(exc)) from exc


def _answer_value(token: str):
    """One accepted answer as typed: true, false and numbers as JSON reads them, anything else
    (an option value such as ``left``) as text."""
    try:
        value = json.loads(token)
    except json.JSONDecodeError:
        return token
    return value if isinstance(value, bool | int | float) else token


def question_choices() -> list[tuple[str, str]]:
    """The questions a condition can name, across the campaigns a rule may take: each key with
    what it is in which campaigns (``best: pick in teachers``)."""
    uses: dict[str, list[str]] = {}
    for campaign in Campaign.objects.filter(kind__in=RULE_CAMPAIGN_KINDS).order_by("name"):
        for question in campaign.question_schema or []:
            if is_pick_question(campaign, question):
                what = "pick" if question["type"] == "pick" else "pair"
            elif question.get("type") in CONDITION_TYPES and campaign.kind != CampaignKind.PAIR:
                what = question["type"]
            else:
                continue
            uses.setdefault(question["key"], []).append(f"{what} in {campaign.name}")
    return [("", "—")] + [
        (key, f"{key}: {'; '.join(places[:3])}{' …' if len(places) > 3 else ''}")
        for key, places in sorted(uses.items())
    ]


class RuleForm(forms.Form):
    name = forms.CharField(max_length=200)
    purpose = forms.ChoiceField(choices=DatasetPurpose.choices)
    kind = forms.ChoiceField(
        choices=[("", "as the purpose says"), *DatasetKind.choices],
        required=False,
        help_text="Needed only where the purpose takes both (weak, evaluation).",
    )
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    campaigns = forms.ModelMultipleChoiceField(
        queryset=Campaign.objects.filter(kind__in=RULE_CAMPAIGN_KINDS).order_by("name"),
        required=False,
        help_text="Single-candidate and best-of-N campaigns; pair campaigns with pick "
        "conditions only.",
    )
    weak_sources = forms.ModelMultipleChoiceField(
        queryset=WeakSource.objects.order_by("name"), required=False, help_text="Weak rules only."
    )
    consensus_method = forms.ChoiceField(
        choices=[(m, m) for m in ALL_METHODS],
        initial=MAJORITY,
        help_text="How answer conditions agree on a label; pick conditions count picks.",
    )
    min_judgments = forms.IntegerField(initial=1, min_value=0)
    exclude_gold = forms.BooleanField(initial=True, required=False)
    exclude_paused_only = forms.BooleanField(
        initial=True, required=False, label="Exclude items judged by paused raters only"
    )
    exclude_held_out = forms.BooleanField(initial=True, required=False)
    min_motion_score = forms.FloatField(required=False, help_text="Animations only, 0 to 1.")
    per_prompt_cap = forms.IntegerField(required=False)
    dedup_max_distance = forms.IntegerField(
        required=False, help_text="Drop near-duplicates within this many bits (0 to 16)."
    )
    validation_fraction = forms.FloatField(initial=0.1)
    split_seed = forms.IntegerField(initial=0, min_value=0)
    caption_source = forms.ChoiceField(choices=CaptionSource.choices)
    caption_template = forms.CharField(
        required=False, max_length=500, help_text="{prompt}, {enhanced_prompt}, {motion_prompt}"
    )
    weak_label_filters = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        help_text='Weak rules: JSON, e.g. {"style": ["flat"]}.',
    )
    motion_buckets = forms.CharField(
        required=False, help_text="Weak animation rules: bucket numbers, e.g. 1 2."
    )
    training_trigger = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text='JSON: {"recipe", "base_model_version_id", "role", "params"}; empty for none.',
    )

    def clean_weak_label_filters(self):
        return _json_field(self.cleaned_data["weak_label_filters"], empty={})

    def clean_training_trigger(self):
        return _json_field(self.cleaned_data["training_trigger"], empty=None)

    def clean_motion_buckets(self):
        text = self.cleaned_data["motion_buckets"].replace(",", " ").split()
        try:
            return [int(part) for part in text]
        except ValueError as exc:
            raise forms.ValidationError("Give bucket numbers separated by spaces.") from exc


class ConditionForm(forms.Form):
    """One condition. ``keep`` says which kind: thresholds on each candidate's consensus
    answers, or the candidate people picked (a pick condition, sent with min_agreement)."""

    keep = forms.ChoiceField(
        choices=[
            (KEEP_ANSWERS, "by its answers"),
            (KEEP_PICK, "the candidate people picked (best of N, pair)"),
        ],
        initial=KEEP_ANSWERS,
        required=False,
    )
    question = forms.ChoiceField(required=False)
    labels = forms.CharField(required=False)
    min_confidence = forms.FloatField(required=False)
    min_mean = forms.FloatField(required=False)
    max_mean = forms.FloatField(required=False)
    min_agreement = forms.FloatField(required=False)
    min_judgments = forms.IntegerField(required=False)

    def __init__(self, *args, questions: list[tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["question"].choices = questions
        # The row is a table row under column headings: each input names itself.
        number = (self.prefix or "").rsplit("-", 1)[-1]
        row = f", condition {int(number) + 1}" if number.isdigit() else ""
        for name, field in self.fields.items():
            field.widget.attrs["aria-label"] = f"{field.label or pretty_name(name)}{row}"

    def clean_labels(self):
        tokens = self.cleaned_data["labels"].replace(",", " ").split()
        return [_answer_value(t) for t in tokens] or None

    def clean(self):
        data = super().clean()
        if not data.get("question"):
            return data
        pick = data.get("keep") == KEEP_PICK
        for name in ANSWER_FIELDS if pick else PICK_FIELDS:
            if data.get(name) is not None:
                data.pop(name)
                self.add_error(
                    name,
                    "Only answer conditions take this."
                    if pick
                    else "Only pick conditions take this: keep the candidate people picked.",
                )
        return data

    def condition(self) -> dict | None:
        """The condition as the rule service takes it; None for an empty row."""
        data = self.cleaned_data
        if not data.get("question"):
            return None
        condition = {"question": data["question"]}
        if data.get("keep") == KEEP_PICK:
            condition["min_agreement"] = data.get("min_agreement")
            names = ("min_judgments",)
        else:
            names = ANSWER_FIELDS
        condition.update({n: data[n] for n in names if data.get(n) is not None})
        return condition


ConditionFormSet = forms.formset_factory(
    ConditionForm, extra=3, max_num=MAX_CONDITIONS, validate_max=True
)


def condition_initial(condition: dict) -> dict:
    """A stored condition as its form row shows it."""
    row = {"keep": KEEP_PICK if is_pick_condition(condition) else KEEP_ANSWERS, **condition}
    if condition.get("labels") is not None:
        row["labels"] = ", ".join(
            json.dumps(v) if not isinstance(v, str) else v for v in condition["labels"]
        )
    return row


def rule_initial(rule: DatasetRule) -> dict:
    """A saved rule's settings as the form shows them."""
    return {
        "name": rule.name,
        "purpose": rule.purpose,
        "kind": rule.kind,
        "description": rule.description,
        "campaigns": list(rule.campaigns.all()),
        "weak_sources": list(rule.weak_sources.all()),
        "consensus_method": rule.consensus_method,
        "min_judgments": rule.min_judgments,
        "exclude_gold": rule.exclude_gold,
        "exclude_paused_only": rule.exclude_paused_only,
        "exclude_held_out": rule.exclude_held_out,
        "min_motion_score": rule.min_motion_score,
        "per_prompt_cap": rule.per_prompt_cap,
        "dedup_max_distance": rule.dedup_max_distance,
        "validation_fraction": rule.validation_fraction,
        "split_seed": rule.split_seed,
        "caption_source": rule.caption_source,
        "caption_template": rule.caption_template,
        "weak_label_filters": json.dumps(rule.weak_label_filters)
        if rule.weak_label_filters
        else "",
        "motion_buckets": " ".join(map(str, rule.motion_buckets or [])),
        "training_trigger": json.dumps(rule.training_trigger, indent=2)
        if rule.training_trigger
        else "",
    }
