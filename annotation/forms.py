"""Curator page forms. They parse input only; the services validate and write."""

import json

from django import forms
from django.contrib.auth import get_user_model

from annotation.models import (
    Campaign,
    CampaignKind,
    CampaignStatus,
    MembershipStatus,
    Preset,
    RaterPrompt,
)
from annotation.schema import PRESETS
from generation.models import CandidateKind, GenerationBatch, ModelVersion, Tag
from stickerloop.input_checks import InputProblem, json_loads_checked


def _raters():
    return get_user_model().objects.filter(groups__name="rater").order_by("username").distinct()


def _preset_choices() -> list[tuple[str, str]]:
    """Each preset with the campaigns it fits and what it asks, so a curator can choose
    without reading JSON; Custom last."""
    choices = []
    for name, preset in PRESETS.items():
        kinds = " or ".join(CampaignKind(k).label.lower() for k in preset["kinds"])
        asks = "; ".join(q["label"] for q in preset["questions"])
        choices.append((name, f"{Preset(name).label} (for {kinds} campaigns): {asks}"))
    return [*choices, (Preset.CUSTOM, "Custom: my own questions, as JSON below")]


def _candidate_ids(value: str) -> list[int]:
    try:
        return [int(part) for part in value.replace(",", " ").split()]
    except ValueError as exc:
        raise forms.ValidationError("Give candidate ids as numbers separated by spaces.") from exc


class CampaignForm(forms.Form):
    name = forms.CharField(max_length=200)
    kind = forms.ChoiceField(choices=CampaignKind.choices)
    presets = forms.MultipleChoiceField(
        label="Questions",
        choices=_preset_choices,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Tick at least one preset, or Custom."},
        help_text="Tick several presets to ask all their questions (a note shared by them is "
        "asked once, last). Custom: write the questions as JSON below.",
    )
    question_schema = forms.CharField(
        label="Custom questions",
        widget=forms.Textarea(attrs={"rows": 8, "cols": 80}),
        required=False,
        help_text="Only with Custom ticked: a JSON list of questions.",
    )
    guidelines = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 8, "cols": 80}),
        required=False,
        help_text="Markdown.",
    )
    good_examples = forms.CharField(required=False, help_text="Candidate ids, space-separated.")
    bad_examples = forms.CharField(required=False, help_text="Candidate ids, space-separated.")
    overlap = forms.IntegerField(initial=3)
    max_overlap = forms.IntegerField(required=False, help_text="Empty: the same as overlap.")
    lease_seconds = forms.IntegerField(initial=600)
    gold_rate = forms.FloatField(initial=0.0)
    rater_prompt = forms.ChoiceField(
        label="Raters see",
        choices=RaterPrompt.choices,
        initial=RaterPrompt.RAW,
        required=False,
        help_text="The prompt beside each candidate. Alignment is judged against the prompt as "
        "written unless you choose the enhanced one.",
    )
    raters = forms.ModelMultipleChoiceField(queryset=None, required=False)
    # Set when the form is opened from a batch's page: the new campaign's page then offers that
    # batch's candidates as its first items.
    batch = forms.ModelChoiceField(
        queryset=GenerationBatch.objects.all(), required=False, widget=forms.HiddenInput
    )

    def __init__(self, *args, editing: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["raters"].queryset = _raters()
        if editing:
            del self.fields["kind"]
            del self.fields["raters"]
            del self.fields["batch"]

    def clean_question_schema(self):
        text = self.cleaned_data["question_schema"].strip()
        if not text:
            return None
        try:
            return json_loads_checked(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}).") from exc
        except InputProblem as exc:
            raise forms.ValidationError(str(exc)) from exc

    def clean(self):
        """Custom stands alone: its questions are the JSON below, not a preset's."""
        data = super().clean()
        presets = data.get("presets") or []
        if Preset.CUSTOM in presets and len(presets) > 1:
            self.add_error(
                "presets",
                "Custom cannot be combined with presets: tick Custom alone and write every "
                "question below, or untick it.",
            )
        elif presets and Preset.CUSTOM not in presets and data.get("question_schema"):
            self.add_error(
                "question_schema",
                "Questions written here are used only with Custom ticked; tick Custom alone, "
                "or empty this box.",
            )
        return data

    def clean_rater_prompt(self):
        return self.cleaned_data["rater_prompt"] or RaterPrompt.RAW

    def clean_good_examples(self):
        return _candidate_ids(self.cleaned_data["good_examples"])

    def clean_bad_examples(self):
        return _candidate_ids(self.cleaned_data["bad_examples"])


class SelectionForm(forms.Form):
    batches = forms.ModelMultipleChoiceField(
        queryset=GenerationBatch.objects.order_by("-id"), required=False
    )
    model_versions = forms.ModelMultipleChoiceField(
        queryset=ModelVersion.objects.order_by("name"), required=False
    )
    prompt_tags = forms.ModelMultipleChoiceField(
        queryset=Tag.objects.order_by("name"), required=False, to_field_name="name"
    )
    candidate_kind = forms.ChoiceField(
        choices=[("", "any"), *CandidateKind.choices], required=False
    )
    group_size = forms.IntegerField(
        required=False,
        help_text="Best-of-N and set campaigns: candidates per item (best-of-N: empty makes one "
        "item per source sticker and seed, with every model's animation).",
    )
    seed = forms.IntegerField(required=False, help_text="Seed for the display order.")


class MembershipForm(forms.Form):
    rater = forms.ModelChoiceField(queryset=None)
    status = forms.ChoiceField(choices=MembershipStatus.choices)
    reason = forms.CharField(max_length=500, required=False)
    # A choice rather than a checkbox: an absent checkbox reads as False, and a pause that says
    # nothing must exclude, as it does from the API endpoints.
    exclude = forms.TypedChoiceField(
        label="On pause",
        choices=[(True, "stop counting their judgments"), (False, "keep their judgments counting")],
        coerce=lambda value: value == "True",
        empty_value=True,
        required=False,
        initial=True,
        help_text="Their judgments since their last resume; a resume counts them again.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["rater"].queryset = _raters()


def _open_campaigns():
    return Campaign.objects.exclude(status=CampaignStatus.CLOSED).order_by("-created_at", "-id")


class RaterCreateForm(forms.Form):
    username = forms.CharField(
        max_length=150, help_text="What they log in with: letters, digits and @ . + - _."
    )
    email = forms.EmailField(
        label="E-mail address",
        required=False,
        error_messages={"invalid": "This is not an e-mail address."},
        help_text="Needed only to send the link by e-mail.",
    )
    delivery = forms.ChoiceField(
        label="The set-password link",
        choices=[
            ("show", "Show it to me once, to hand over myself"),
            ("email", "E-mail it to the address above"),
        ],
        initial="show",
        widget=forms.RadioSelect,
    )
    campaigns = forms.ModelMultipleChoiceField(
        queryset=None,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Campaigns they may rate in at once (draft, running or paused).",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["campaigns"].queryset = _open_campaigns()


class RaterCampaignsForm(forms.Form):
    campaigns = forms.ModelMultipleChoiceField(
        queryset=None,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Tick at least one campaign."},
    )

    def __init__(self, *args, rater=None, **kwargs):
        super().__init__(*args, **kwargs)
        campaigns = _open_campaigns()
        if rater is not None:
            campaigns = campaigns.exclude(memberships__rater=rater)
        self.fields["campaigns"].queryset = campaigns
