"""A campaign's quality policy: thresholds, automatic pauses and the qualification it requires."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from annotation.models import (
    Campaign,
)
from annotation.quality import selectors
from annotation.quality.models import (
    Method,
    QualityPolicy,
)
from annotation.quality.services.membership import qualification_gate_apply


def is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


POLICY_SHARES = (
    "min_gold_accuracy",
    "min_consensus_agreement",
    "max_fast_share",
    "confidence_target",
    "qualification_min_accuracy",
)
POLICY_COUNTS = {
    "min_gold_judgments": 1000,
    "min_consensus_judgments": 100_000,
    "min_speed_judgments": 100_000,
    "qualification_min_gold": 1000,
}
POLICY_FIELDS = {
    *POLICY_SHARES,
    *POLICY_COUNTS,
    "speed_floor_seconds",
    "consensus_method",
    "qualification_campaign",
    "auto_pause",
}
SPEED_FLOOR_MAX = 600.0


def _policy_errors(campaign: Campaign, values: dict, merged: dict) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for name in sorted(set(values) - POLICY_FIELDS):
        errors[name] = ["Unknown policy field."]
    for name in POLICY_SHARES:
        if name not in values:
            continue
        value = values[name]
        if value is None and name == "min_consensus_agreement":
            continue
        if not is_number(value) or not 0.0 <= value <= 1.0:
            errors[name] = [f"Must be a number from 0 to 1, not {value!r}."]
    for name, high in POLICY_COUNTS.items():
        if name in values:
            value = values[name]
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
                errors[name] = [f"Must be a whole number from 1 to {high}, not {value!r}."]
    if "speed_floor_seconds" in values:
        value = values["speed_floor_seconds"]
        if not is_number(value) or not 0.0 <= value <= SPEED_FLOOR_MAX:
            errors["speed_floor_seconds"] = [
                f"Must be a number of seconds from 0 to {SPEED_FLOOR_MAX:.0f}, not {value!r}."
            ]
    if "auto_pause" in values and not isinstance(values["auto_pause"], bool):
        errors["auto_pause"] = ["Must be true or false."]
    if "consensus_method" in values:
        method = values["consensus_method"]
        fitting = {
            m
            for q in selectors.campaign_questions(campaign)
            for m in selectors.methods_for_question(q)
        }
        if method not in Method.values:
            errors["consensus_method"] = [
                f"Unknown consensus method {method!r}; use one of {', '.join(Method.values)}."
            ]
        elif method not in fitting:
            errors["consensus_method"] = [
                f"Method {method!r} fits none of the campaign's questions "
                f"(methods that fit: {', '.join(sorted(fitting)) or 'none'})."
            ]
    if "qualification_campaign" in values and values["qualification_campaign"] is not None:
        qualifier = values["qualification_campaign"]
        if not isinstance(qualifier, Campaign):
            errors["qualification_campaign"] = ["Must be a campaign."]
        elif qualifier.pk == campaign.pk:
            errors["qualification_campaign"] = ["A campaign cannot qualify raters for itself."]
        elif "qualification_min_gold" not in errors:
            gold = qualifier.items.filter(is_gold=True).count()
            needed = merged["qualification_min_gold"]
            if gold < needed:
                errors["qualification_campaign"] = [
                    f"Campaign {qualifier.name!r} has {gold} gold item(s); raters must answer "
                    f"{needed} to qualify."
                ]
    return errors


@transaction.atomic
def quality_policy_set(*, campaign: Campaign, **values) -> QualityPolicy:
    """Create or change a campaign's quality policy; ValidationError (nothing stored) names each
    field out of range. Setting a qualification campaign applies the gate at once."""
    policy = QualityPolicy.objects.select_for_update().filter(campaign=campaign).first()
    policy = policy or QualityPolicy(campaign=campaign)
    merged = {name: getattr(policy, name) for name in POLICY_FIELDS - {"qualification_campaign"}}
    merged.update({k: v for k, v in values.items() if k in POLICY_FIELDS})
    errors = _policy_errors(campaign, values, merged)
    if errors:
        raise ValidationError(errors)
    for name, value in values.items():
        floating = name in POLICY_SHARES or name == "speed_floor_seconds"
        setattr(policy, name, float(value) if floating and value is not None else value)
    policy.full_clean()
    policy.save()
    campaign.quality_policy = policy
    qualification_gate_apply(campaign=campaign)
    return policy
