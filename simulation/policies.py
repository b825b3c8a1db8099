"""Answers from what the oracle sees, bent by a rater's profile.

``see`` turns the oracle's factor probabilities for one shown candidate, and what its prompt
asks (``captions.parse``), into scores and yes/no verdicts per criterion:

- ``alignment``: the oracle's subject, colour and expression are those the prompt names (the
  score is the product of their probabilities; the verdict asks every argmax to match);
- ``style``: the oracle's ``sticker_style`` is yes;
- ``moving``: the oracle's motion is not ``still``; ``motion_relevant``: it is the motion the
  prompt names (any motion when none is named); ``smooth``: the clip is smooth;
  ``consistent``: the oracle sees the same subject on a later frame as on the first;
  ``motion``: relevant and smooth;
- ``overall``: alignment and style for a sticker, motion and style for an animation.

``truthful`` answers a question as the oracle sees it; ``bend`` applies a profile. Question
keys of the presets name their criterion (``KEY_CRITERIA``); any other key is judged on
``overall``. Answers name shown candidates by display position, as the rating API wants.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from generation.world import captions, factors

from .profiles import Profile

CRITERIA = (
    "alignment",
    "style",
    "moving",
    "motion_relevant",
    "smooth",
    "consistent",
    "motion",
    "overall",
)
MOTION_CRITERIA = ("moving", "motion_relevant", "smooth", "consistent", "motion")
KEY_CRITERIA = {
    "aligned": "alignment",
    "alignment": "alignment",
    "style_pass": "style",
    "style": "style",
    "style_kept": "style",
    "motion_present": "moving",
    "motion_big_enough": "moving",
    "motion_relevant": "motion_relevant",
    "subject_consistent": "consistent",
    "artifact_free": "smooth",
    "loops_smoothly": "smooth",
    "motion": "motion",
    "motion_pass": "motion",
}
# Scores closer than this make a pair a tie.
TIE_MARGIN = 0.15
AGGREGATED_TYPES = ("binary", "likert", "single_choice", "pick")
REQUIRED_NOTE = "Judged by a simulated rater."
# The presets' reason tags, from the oracle's style parts and content mismatches.
DEFECT_TAGS = {
    ("background", "opaque"): "background",
    ("background", "textured"): "background",
    ("outline", "none"): "no_border",
    ("outline", "thin"): "no_border",
    ("finish", "shaded"): "photorealistic",
    ("finish", "noisy"): "cluttered",
    ("placement", "offcentre"): "cluttered",
    ("placement", "cropped"): "cropped",
}
MISSING_TAGS = {"subject": "subject", "colour": "attribute", "expression": "attribute"}


def argmax(probabilities: dict[str, float]) -> str:
    """The most probable label; the first listed among equals."""
    return max(probabilities, key=probabilities.__getitem__)


@dataclass(frozen=True)
class Seen:
    """What the oracle sees of one shown candidate, against what its prompt asks."""

    position: int
    side: str
    animated: bool
    content: tuple[str, str, str]  # the oracle's subject, colour, expression
    scores: dict[str, float] = field(default_factory=dict)
    holds: dict[str, bool] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    defects: tuple[str, ...] = ()


def see(
    *,
    candidate: dict,
    image: dict[str, dict[str, float]],
    animation: dict[str, dict[str, float]] | None = None,
    later_image: dict[str, dict[str, float]] | None = None,
) -> Seen:
    """``candidate``: the rating API's shown candidate (position, side, prompt, motion_prompt).
    ``image``: the oracle's probabilities for the sticker (an animation's first frame);
    ``animation`` and ``later_image`` (a later frame) for animations only."""
    asked = captions.parse(candidate.get("prompt") or "")
    motion_asked = captions.parse(candidate.get("motion_prompt") or "")["motion"] or asked["motion"]
    scores: dict[str, float] = {}
    holds: dict[str, bool] = {}
    alignment, aligned, missing = 1.0, True, []
    for factor in ("subject", "colour", "expression"):
        wanted = asked[factor]
        if wanted is None:
            continue
        alignment *= image[factor].get(wanted, 0.0)
        if argmax(image[factor]) != wanted:
            aligned = False
            missing.append(MISSING_TAGS[factor])
    scores["alignment"], holds["alignment"] = alignment, aligned
    scores["style"] = image["sticker_style"]["yes"]
    holds["style"] = argmax(image["sticker_style"]) == "yes"
    defects = [
        DEFECT_TAGS[(part, argmax(image[part]))]
        for part in factors.STYLE_PARTS
        if (part, argmax(image[part])) in DEFECT_TAGS
    ]
    if animation is None:
        for criterion in MOTION_CRITERIA:
            scores[criterion], holds[criterion] = 0.0, False
        scores["overall"] = scores["alignment"] * scores["style"]
        holds["overall"] = holds["alignment"] and holds["style"]
    else:
        motion = animation["motion"]
        scores["moving"] = 1.0 - motion.get(factors.STILL, 0.0)
        holds["moving"] = argmax(motion) != factors.STILL
        if motion_asked is None:
            scores["motion_relevant"], holds["motion_relevant"] = scores["moving"], holds["moving"]
        else:
            scores["motion_relevant"] = motion.get(motion_asked, 0.0)
            holds["motion_relevant"] = argmax(motion) == motion_asked
            if not holds["motion_relevant"]:
                missing.append("action")
        scores["smooth"] = animation["smoothness"]["smooth"]
        holds["smooth"] = argmax(animation["smoothness"]) == "smooth"
        later = later_image or image
        same = sum(p * later["subject"].get(s, 0.0) for s, p in image["subject"].items())
        scores["consistent"] = same
        holds["consistent"] = argmax(later["subject"]) == argmax(image["subject"])
        scores["motion"] = scores["motion_relevant"] * scores["smooth"]
        holds["motion"] = holds["motion_relevant"] and holds["smooth"]
        scores["overall"] = scores["motion"] * scores["style"]
        holds["overall"] = holds["motion"] and holds["style"]
    return Seen(
        position=candidate["position"],
        side=candidate.get("side") or "",
        animated=animation is not None,
        content=(
            argmax(image["subject"]),
            argmax(image["colour"]),
            argmax(image["expression"]),
        ),
        scores=scores,
        holds=holds,
        missing=tuple(dict.fromkeys(missing)),
        defects=tuple(dict.fromkeys(defects)),
    )


def criterion_of(question: dict) -> str:
    return KEY_CRITERIA.get(question["key"], "overall")


def _values(question: dict) -> list:
    return [option["value"] for option in question.get("options") or []]


def _is_pair(question: dict) -> bool:
    return {"left", "right"} <= set(_values(question))


def _sides(seen: list[Seen]) -> tuple[Seen, Seen]:
    by_side = {s.side: s for s in seen}
    if "left" in by_side and "right" in by_side:
        return by_side["left"], by_side["right"]
    ordered = sorted(seen, key=lambda s: s.position)
    return ordered[0], ordered[1]


def diversity(seen: list[Seen]) -> int:
    """1 (all the same content) to 5 (every candidate different), from the oracle's subject,
    colour and expression of each."""
    if len(seen) < 2:
        return 1
    distinct = len({s.content for s in seen})
    return 1 + int(4 * (distinct - 1) / (len(seen) - 1) + 0.5)


def _multi_choice(question: dict, tags: list[str]) -> list[str]:
    values = _values(question)
    chosen = [v for v in values if v in tags][: question.get("max_choices", len(values))]
    for value in values:
        if len(chosen) >= question.get("min_choices", 0):
            break
        if value not in chosen:
            chosen.append(value)
    return chosen


def _truthful_one(question: dict, seen: list[Seen]):
    """The answer to a question asked of the shown ``seen`` together (or of one of them)."""
    qtype, criterion = question["type"], criterion_of(question)
    optional = not question.get("required")
    if optional and criterion in MOTION_CRITERIA and not any(s.animated for s in seen):
        return None  # "Animations only": a person leaves it blank for stickers
    if qtype == "binary":
        return all(s.holds[criterion] for s in seen)
    if qtype == "likert":
        if question["key"] == "diversity":
            return diversity(seen)
        mean = sum(s.scores[criterion] for s in seen) / len(seen)
        return 1 + int(4 * mean + 0.5)
    if qtype == "single_choice":
        values = _values(question)
        if _is_pair(question) and len(seen) >= 2:
            left, right = _sides(seen)
            difference = left.scores[criterion] - right.scores[criterion]
            if abs(difference) < TIE_MARGIN and "tie" in values:
                return "tie"
            return "left" if difference >= 0 else "right"
        return values[0] if all(s.holds[criterion] for s in seen) else values[-1]
    if qtype == "pick":
        return max(seen, key=lambda s: (s.scores[criterion], -s.position)).position
    if qtype == "multi_choice":
        tags = [t for s in seen for t in (*s.missing, *s.defects)]
        if question["key"] == "missing":
            tags = [t for s in seen for t in s.missing]
        elif question["key"] == "defects":
            tags = [t for s in seen for t in s.defects]
        chosen = _multi_choice(question, tags)
        # Nothing ticked: a person sends no answer to an optional question.
        return chosen or (None if optional else chosen)
    if qtype == "text":
        return REQUIRED_NOTE if question.get("required") else None
    raise ValueError(f"Unknown question type {qtype!r}.")


def truthful(question: dict, seen: list[Seen]):
    """``question`` answered as the oracle sees the shown candidates ``seen`` (display order);
    per candidate: ``{"<position>": answer}``. None: an optional answer left out."""
    if question.get("per_candidate"):
        answers = {str(s.position): _truthful_one(question, [s]) for s in seen}
        return {c: v for c, v in answers.items() if v is not None} or None
    return _truthful_one(question, seen)


def _others(values: list, value) -> list:
    return [v for v in values if v != value]


def _likert_step(value: int, rng: random.Random) -> int:
    """A neighbouring score: the only one at either end, else one of the two at random."""
    if value in (1, 5):
        return 2 if value == 1 else 4
    return value + rng.choice((-1, 1))


def _bend_one(question: dict, value, seen: list[Seen], profile: Profile, rng: random.Random):
    qtype = question["type"]
    if value is None or qtype == "text":
        return value
    if qtype == "multi_choice":
        if not profile.looks or profile.error == "opposite":
            least = _multi_choice(question, [])
            return least or (least if question.get("required") else None)
        return value
    if qtype == "binary":
        if not profile.looks:
            return rng.random() < 0.5
        if rng.random() >= profile.accuracy:
            value = not value
        if not value and profile.pass_bias and rng.random() < profile.pass_bias:
            value = True
        return value
    if qtype == "likert":
        if not profile.looks:
            return rng.randint(1, 5)
        if rng.random() >= profile.accuracy:
            mirror = 6 - value
            if profile.error == "opposite" and mirror != value:
                value = mirror
            else:
                value = _likert_step(value, rng)
        if value < 5 and profile.pass_bias and rng.random() < profile.pass_bias:
            value += 1
        return value
    if qtype == "single_choice":
        values = _values(question)
        if not profile.looks:
            return rng.choice(values)
        if rng.random() >= profile.accuracy:
            mirror = values[len(values) - 1 - values.index(value)]
            if profile.error == "opposite" and mirror != value:
                return mirror
            return rng.choice(_others(values, value))
        return value
    if qtype == "pick":
        positions = [s.position for s in seen]
        if not profile.looks:
            return rng.choice(positions)
        if rng.random() >= profile.accuracy and len(positions) > 1:
            criterion = criterion_of(question)
            worst = min(seen, key=lambda s: (s.scores[criterion], s.position)).position
            if profile.error == "opposite" and worst != value:
                return worst
            return rng.choice(_others(positions, value))
        return value
    raise ValueError(f"Unknown question type {qtype!r}.")


def bend(question: dict, value, seen: list[Seen], profile: Profile, rng: random.Random):
    """``value`` (from ``truthful``) as a rater of ``profile`` gives it; draws from ``rng`` in a
    fixed order, so a rater's answers follow from its seed."""
    if question.get("per_candidate") and isinstance(value, dict):
        by_position = {str(s.position): s for s in seen}
        return {
            key: _bend_one(question, v, [by_position[key]], profile, rng)
            for key, v in value.items()
        }
    return _bend_one(question, value, seen, profile, rng)


def answer_sheet(
    schema: list[dict], seen: list[Seen], profile: Profile, rng: random.Random
) -> tuple[dict, dict]:
    """(the answers the rater sends, the answers as the oracle sees them), every question of
    ``schema`` in order; empty optional answers are left out of both."""
    given, truth = {}, {}
    for question in schema:
        value = truthful(question, seen)
        if value is None:
            continue
        truth[question["key"]] = value
        bent = bend(question, value, seen, profile, rng)
        if bent is not None:
            given[question["key"]] = bent
    return given, truth


def agreement(schema: list[dict], given: dict, truth: dict) -> tuple[int, int]:
    """(answers equal to the oracle's, answers compared) over the questions consensus is
    computed for (binary, Likert, single choice, pick), each candidate of a per-candidate
    question counting once."""
    matches = compared = 0
    for question in schema:
        key = question["key"]
        if question["type"] not in AGGREGATED_TYPES or key not in truth:
            continue
        if question.get("per_candidate"):
            pairs = [(given[key].get(c), v) for c, v in truth[key].items()]
        else:
            pairs = [(given.get(key), truth[key])]
        matches += sum(a == b for a, b in pairs)
        compared += len(pairs)
    return matches, compared
