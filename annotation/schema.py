"""Question schemas: presets, validation of a schema when it is saved, validation of answers.

A schema is a list of questions. Each question has a ``key`` (the answer's key), a ``type``, a
``label``, ``help`` text, ``required``, and for choice-like types ``options`` of
``{value, label, shortcut}``. Types and their answers:

- ``binary``: ``true`` / ``false`` (options default to Yes ``y`` / No ``n``; labels may change).
- ``likert``: an integer 1..5 (shortcuts ``1``..``5``).
- ``single_choice``: one option value.
- ``multi_choice``: a list of distinct option values (reason tags; may be empty).
- ``text``: a free-text note of at most ``max_length`` characters.
- ``pick``: one of the shown candidates' ids, or ``null`` when not required (best-of-N "best").
  Raters name the shown candidates by display position instead (``answers_by_candidate``).

A question with ``per_candidate: true`` (campaigns showing several candidates) is answered once
per shown candidate: ``{"<candidate id>": answer}``. Shortcuts are single characters, unique
within their question; the rating screen moves from question to question, so keys repeat across
questions. Keys the screen itself uses are reserved.
"""

import re
from copy import deepcopy

from django.core.exceptions import ValidationError

from annotation.models import CampaignKind, Preset

QUESTION_TYPES = ("binary", "likert", "single_choice", "multi_choice", "text", "pick")
KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
VALUE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
# Keys the rating screen uses itself: skip, undo, help, background, guidelines, prompt,
# play/pause, frame step, speed.
RESERVED_SHORTCUTS = frozenset({"s", "u", "?", "b", "g", "p", " ", ",", ".", "[", "]"})
_RESERVED_TEXT = " ".join(sorted(k for k in RESERVED_SHORTCUTS if k != " "))
MAX_QUESTIONS = 20
MAX_OPTIONS = 12
TEXT_MAX_LENGTH = 2000
MULTI_CANDIDATE_KINDS = (CampaignKind.PAIR, CampaignKind.BEST_OF_N, CampaignKind.SET)

YES_NO = [
    {"value": True, "label": "Yes", "shortcut": "y"},
    {"value": False, "label": "No", "shortcut": "n"},
]
PASS_FAIL = [
    {"value": True, "label": "Pass", "shortcut": "y"},
    {"value": False, "label": "Fail", "shortcut": "n"},
]
LEFT_TIE_RIGHT = [
    {"value": "left", "label": "Left", "shortcut": "1"},
    {"value": "tie", "label": "Tie", "shortcut": "2"},
    {"value": "right", "label": "Right", "shortcut": "3"},
]


def _tags(*pairs: tuple[str, str]) -> list[dict]:
    return [
        {"value": value, "label": label, "shortcut": str(n)}
        for n, (value, label) in enumerate(pairs, start=1)
    ]


def _note() -> dict:
    return {
        "key": "note",
        "type": "text",
        "label": "Note",
        "help": "Anything else?",
        "required": False,
    }


PRESETS: dict[str, dict] = {
    Preset.ALIGNMENT: {
        "kinds": [CampaignKind.SINGLE],
        "questions": [
            {
                "key": "aligned",
                "type": "binary",
                "label": "Does the sticker show what the prompt asks?",
                "help": "Subjects, actions, attributes and counts must all be there.",
                "options": PASS_FAIL,
            },
            {
                "key": "missing",
                "type": "multi_choice",
                "label": "What is missing or wrong?",
                "help": "Tick everything that does not match the prompt.",
                "required": False,
                "options": _tags(
                    ("subject", "Subject"),
                    ("action", "Action"),
                    ("attribute", "Attribute"),
                    ("count", "Count"),
                    ("other", "Other"),
                ),
            },
            _note(),
        ],
    },
    Preset.STYLE: {
        "kinds": [CampaignKind.SINGLE],
        "questions": [
            {
                "key": "style_pass",
                "type": "binary",
                "label": "Is this a good sticker?",
                "help": "Clean border, flat vivid colours, one centred subject, clean background.",
                "options": PASS_FAIL,
            },
            {
                "key": "defects",
                "type": "multi_choice",
                "label": "Defects",
                "help": "Tick every defect you see.",
                "required": False,
                "options": _tags(
                    ("no_border", "No clean border"),
                    ("background", "Background not clean"),
                    ("stray_text", "Stray text"),
                    ("cropped", "Cropped"),
                    ("photorealistic", "Photorealistic"),
                    ("cluttered", "Cluttered"),
                ),
            },
            _note(),
        ],
    },
    Preset.MOTION: {
        "kinds": [CampaignKind.SINGLE],
        "questions": [
            *[
                {"key": key, "type": "binary", "label": label, "help": help_text, "options": YES_NO}
                for key, label, help_text in [
                    ("motion_present", "Is there motion?", "Anything moves at all."),
                    (
                        "motion_big_enough",
                        "Is the motion big enough?",
                        "Not just a shimmer or a tiny wobble.",
                    ),
                    (
                        "motion_relevant",
                        "Is the motion relevant?",
                        "It fits the subject and the motion prompt.",
                    ),
                    (
                        "subject_consistent",
                        "Does the subject stay consistent?",
                        "No identity drift, no melting.",
                    ),
                    ("artifact_free", "Is it free of artifacts?", "No flicker, tearing or noise."),
                    ("loops_smoothly", "Does it loop smoothly?", "No jump at the loop point."),
                    ("style_kept", "Is the sticker's style kept?", "Border, colours, flat look."),
                ]
            ],
            {
                "key": "overall",
                "type": "binary",
                "label": "Overall: keep this animation?",
                "help": "Would you put it in the training set?",
                "options": PASS_FAIL,
            },
            _note(),
        ],
    },
    Preset.PAIRWISE: {
        "kinds": [CampaignKind.PAIR],
        "questions": [
            {
                "key": "alignment",
                "type": "single_choice",
                "label": "Better prompt alignment",
                "help": "Which shows the prompt better?",
                "options": LEFT_TIE_RIGHT,
            },
            {
                "key": "style",
                "type": "single_choice",
                "label": "Better sticker style",
                "help": "Which is the better sticker?",
                "options": LEFT_TIE_RIGHT,
            },
            {
                "key": "motion",
                "type": "single_choice",
                "label": "Better motion",
                "help": "Animations only.",
                "required": False,
                "options": LEFT_TIE_RIGHT,
            },
            {
                "key": "overall",
                "type": "single_choice",
                "label": "Better overall",
                "help": "Which would you rather send?",
                "options": LEFT_TIE_RIGHT,
            },
        ],
    },
    Preset.TEACHER_SELECTION: {
        "kinds": [CampaignKind.BEST_OF_N],
        "questions": [
            {
                "key": "motion_pass",
                "type": "binary",
                "label": "Good motion?",
                "per_candidate": True,
                "help": "Motion present, big enough, relevant, consistent, clean, loops, "
                "style kept.",
                "options": PASS_FAIL,
            },
            {
                "key": "best",
                "type": "pick",
                "label": "Best animation",
                "help": "Pick the best one, or none.",
                "required": False,
            },
        ],
    },
    Preset.DIVERSITY: {
        "kinds": [CampaignKind.SET],
        "questions": [
            {
                "key": "diversity",
                "type": "likert",
                "label": "How different are the scenes?",
                "help": "1: all the same picture. 5: every one a different scene.",
            },
            _note(),
        ],
    },
}


def preset_for_kind(kind: str) -> str:
    return next(
        (name for name, preset in PRESETS.items() if kind in preset["kinds"]), Preset.CUSTOM
    )


def preset_questions(preset: str) -> list[dict]:
    return normalise_schema(
        deepcopy(PRESETS[preset]["questions"]), kind=PRESETS[preset]["kinds"][0]
    )


def _kind_label(kind: str) -> str:
    return CampaignKind(kind).label.lower()


def presets_questions(presets: list[str], *, kind: str) -> list[dict]:
    """The questions of several presets, for one campaign of ``kind``, in the order given.

    A question that several presets share (the closing note) is asked once, where the last of
    them asks it, so the note stays last. Raises ValidationError under ``presets`` with a
    sentence a curator can act on: an unknown or repeated preset, one that does not fit the
    kind, two presets asking the same key differently, or too many questions together.
    """
    errors = []
    if not presets:
        errors.append("Tick at least one preset.")
    for name in presets:
        if name == Preset.CUSTOM or name not in PRESETS:
            errors.append(f"{name!r} is not a preset; use one of {', '.join(PRESETS)}.")
        elif kind not in PRESETS[name]["kinds"]:
            fits = " or ".join(_kind_label(k) for k in PRESETS[name]["kinds"])
            errors.append(
                f"The {Preset(name).label.lower()} preset is for {fits} campaigns, "
                f"not {_kind_label(kind)} ones."
            )
    if len(set(presets)) != len(presets):
        errors.append("A preset is ticked twice.")
    if errors:
        raise ValidationError({"presets": errors})
    by_key: dict[str, tuple[str, dict]] = {}
    order: list[str] = []
    for name in presets:
        for question in preset_questions(name):
            key = question["key"]
            if key in by_key:
                first, asked = by_key[key]
                if asked != question:
                    raise ValidationError(
                        {
                            "presets": [
                                f"The {first} and {name} presets both ask {key!r}, differently; "
                                "tick only one of them."
                            ]
                        }
                    )
                order.remove(key)
            by_key[key] = (name, question)
            order.append(key)
    if len(order) > MAX_QUESTIONS:
        raise ValidationError(
            {
                "presets": [
                    f"Together these presets ask {len(order)} questions; at most "
                    f"{MAX_QUESTIONS} fit one campaign."
                ]
            }
        )
    return normalise_schema([by_key[key][1] for key in order], kind=kind)


def _question_errors(index: int, q, *, kind: str, seen_keys: set[str]) -> list[str]:
    where = f"Question {index + 1}"
    if not isinstance(q, dict):
        return [f"{where} must be an object."]
    key = q.get("key")
    if not isinstance(key, str) or not KEY_RE.match(key):
        return [f"{where}: key {key!r} must be lowercase letters, digits and _ (at most 40)."]
    where = f"Question {index + 1} ({key!r})"
    errors = []
    if key in seen_keys:
        errors.append(f"{where}: the key is used twice.")
    seen_keys.add(key)
    unknown = sorted(
        set(q)
        - {
            "key",
            "type",
            "label",
            "help",
            "required",
            "options",
            "per_candidate",
            "max_length",
            "min_choices",
            "max_choices",
        }
    )
    if unknown:
        errors.append(f"{where}: unknown field(s) {', '.join(unknown)}.")
    qtype = q.get("type")
    if qtype not in QUESTION_TYPES:
        return [
            *errors,
            f"{where}: unknown type {qtype!r}; use one of {', '.join(QUESTION_TYPES)}.",
        ]
    if not isinstance(q.get("label"), str) or not q["label"].strip() or len(q["label"]) > 300:
        errors.append(f"{where}: a label of 1 to 300 characters is required.")
    if not isinstance(q.get("help", ""), str) or len(q.get("help", "")) > 2000:
        errors.append(f"{where}: help must be text of at most 2000 characters.")
    for flag in ("required", "per_candidate"):
        if not isinstance(q.get(flag, False), bool):
            errors.append(f"{where}: {flag} must be true or false.")
    if q.get("per_candidate") and kind not in MULTI_CANDIDATE_KINDS:
        errors.append(f"{where}: per_candidate needs a campaign that shows several candidates.")
    if qtype == "pick":
        if kind not in MULTI_CANDIDATE_KINDS:
            errors.append(
                f"{where}: a pick question needs a campaign that shows several candidates."
            )
        if q.get("per_candidate"):
            errors.append(f"{where}: a pick question cannot be per candidate.")
        if "options" in q:
            errors.append(f"{where}: a pick question takes its options from the shown candidates.")
    if qtype == "text":
        max_length = q.get("max_length", 1000)
        if not isinstance(max_length, int) or not 1 <= max_length <= TEXT_MAX_LENGTH:
            errors.append(f"{where}: max_length must be an integer from 1 to {TEXT_MAX_LENGTH}.")
        if "options" in q:
            errors.append(f"{where}: a text question has no options.")
    if qtype in ("binary", "likert", "single_choice", "multi_choice"):
        errors += _option_errors(where, q, qtype)
    if qtype == "multi_choice":
        count = len(q.get("options") or [])
        low, high = q.get("min_choices", 0), q.get("max_choices", count)
        if not (isinstance(low, int) and isinstance(high, int) and 0 <= low <= high <= count):
            errors.append(f"{where}: need 0 <= min_choices <= max_choices <= {count} options.")
    return errors


def _option_errors(where: str, q: dict, qtype: str) -> list[str]:
    options = q.get("options")
    if options is None:
        if qtype in ("binary", "likert"):
            return []
        return [f"{where}: a {qtype} question needs options."]
    if not isinstance(options, list) or not all(isinstance(o, dict) for o in options):
        return [f"{where}: options must be a list of {{value, label, shortcut}} objects."]
    errors = []
    if qtype == "binary":
        if [o.get("value") for o in options] != [True, False]:
            errors.append(f"{where}: binary options must be the values true then false.")
    elif qtype == "likert":
        if [o.get("value") for o in options] != [1, 2, 3, 4, 5]:
            errors.append(f"{where}: likert options must be the values 1 to 5 in order.")
    else:
        if not 2 <= len(options) <= MAX_OPTIONS:
            errors.append(f"{where}: give 2 to {MAX_OPTIONS} options, not {len(options)}.")
        values = [o.get("value") for o in options]
        bad = [v for v in values if not isinstance(v, str) or not VALUE_RE.match(v)]
        if bad:
            errors.append(
                f"{where}: option value {bad[0]!r} must be lowercase letters, digits, _ or -."
            )
        elif len(set(values)) != len(values):
            errors.append(f"{where}: option values must not repeat.")
    for option in options:
        label = option.get("label")
        if not isinstance(label, str) or not label.strip() or len(label) > 200:
            errors.append(f"{where}: option {option.get('value')!r} needs a label (at most 200).")
            break
    shortcuts = [o.get("shortcut") for o in options]
    for shortcut in shortcuts:
        if not isinstance(shortcut, str) or len(shortcut) != 1 or not shortcut.isprintable():
            errors.append(f"{where}: shortcut {shortcut!r} must be a single character.")
            break
        if shortcut.lower() in RESERVED_SHORTCUTS:
            errors.append(
                f"{where}: shortcut {shortcut!r} is reserved by the rating screen "
                f"(reserved: {_RESERVED_TEXT} and space)."
            )
            break
    else:
        lowered = [s.lower() for s in shortcuts]
        if len(set(lowered)) != len(lowered):
            errors.append(f"{where}: shortcuts must not repeat within a question.")
    return errors


def _default_options(qtype: str) -> list[dict] | None:
    if qtype == "binary":
        return deepcopy(YES_NO)
    if qtype == "likert":
        return [{"value": n, "label": str(n), "shortcut": str(n)} for n in range(1, 6)]
    return None


def normalise_schema(schema, *, kind: str) -> list[dict]:
    """Check ``schema`` for a campaign of ``kind`` and fill defaults; raise ValidationError.

    Messages name the question and the problem, under the ``question_schema`` field.
    """
    if not isinstance(schema, list) or not schema:
        raise ValidationError({"question_schema": ["Give at least one question."]})
    if len(schema) > MAX_QUESTIONS:
        raise ValidationError(
            {"question_schema": [f"At most {MAX_QUESTIONS} questions, not {len(schema)}."]}
        )
    errors: list[str] = []
    seen: set[str] = set()
    for index, question in enumerate(schema):
        errors += _question_errors(index, question, kind=kind, seen_keys=seen)
    if errors:
        raise ValidationError({"question_schema": errors})
    normalised = []
    for q in schema:
        qtype = q["type"]
        out = {
            "key": q["key"],
            "type": qtype,
            "label": q["label"].strip(),
            "help": q.get("help", ""),
            "required": q.get("required", qtype != "text"),
            "per_candidate": q.get("per_candidate", False),
        }
        options = q.get("options") or _default_options(qtype)
        if options is not None:
            out["options"] = [
                {"value": o["value"], "label": o["label"], "shortcut": o["shortcut"]}
                for o in options
            ]
        if qtype == "text":
            out["max_length"] = q.get("max_length", 1000)
        if qtype == "multi_choice":
            out["min_choices"] = q.get("min_choices", 0)
            out["max_choices"] = q.get("max_choices", len(options))
        normalised.append(out)
    return normalised


def _answer_error(q: dict, value, candidate_ids: list[int]) -> str | None:
    """The problem with one answer to question ``q``, or None when it fits."""
    qtype = q["type"]
    if qtype == "binary":
        return None if isinstance(value, bool) else "Must be true or false."
    if qtype == "likert":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
            return f"Must be an integer from 1 to 5, not {value!r}."
        return None
    if qtype == "single_choice":
        allowed = [o["value"] for o in q["options"]]
        return None if value in allowed else f"{value!r} is not one of {', '.join(allowed)}."
    if qtype == "multi_choice":
        allowed = [o["value"] for o in q["options"]]
        if not isinstance(value, list):
            return "Must be a list of option values."
        unknown = [v for v in value if v not in allowed]
        if unknown:
            return f"{unknown[0]!r} is not one of {', '.join(allowed)}."
        if len(set(value)) != len(value):
            return "Options must not repeat."
        if not q["min_choices"] <= len(value) <= q["max_choices"]:
            return f"Choose {q['min_choices']} to {q['max_choices']} options, not {len(value)}."
        return None
    if qtype == "text":
        if not isinstance(value, str):
            return "Must be text."
        if len(value) > q["max_length"]:
            return f"At most {q['max_length']} characters, not {len(value)}."
        return None
    if qtype == "pick":
        if value is None:
            return "Required." if q["required"] else None
        if isinstance(value, bool) or value not in candidate_ids:
            shown = ", ".join(map(str, candidate_ids))
            return f"{value!r} is not one of the shown candidates ({shown})."
        return None
    return f"Unknown question type {qtype!r}."


def validate_answers(schema: list[dict], answers, *, candidate_ids: list[int]) -> dict:
    """Check ``answers`` against a normalised schema; return them without empty optional answers.

    Raises ValidationError with ``answers.<key>`` fields naming each problem.
    """
    if not isinstance(answers, dict):
        raise ValidationError({"answers": ["Must be an object of {question key: answer}."]})
    errors: dict[str, list[str]] = {}
    known = {q["key"] for q in schema}
    for key in answers:
        if key not in known:
            errors[f"answers.{key}"] = [f"Unknown question {key!r}."]
    clean: dict = {}
    wanted = [str(c) for c in candidate_ids]
    for q in schema:
        key = q["key"]
        value = answers.get(key)
        empty = value is None or (q["type"] == "text" and value == "")
        if empty:
            if q["required"]:
                errors[f"answers.{key}"] = ["This question is required."]
            continue
        if q["per_candidate"]:
            if not isinstance(value, dict):
                errors[f"answers.{key}"] = ["Must be an object of {candidate id: answer}."]
                continue
            extra = sorted(set(map(str, value)) - set(wanted))
            missing = [c for c in wanted if value.get(c) is None]
            if extra:
                errors[f"answers.{key}"] = [f"Candidate {extra[0]} is not shown in this item."]
                continue
            if missing and q["required"]:
                errors[f"answers.{key}"] = [f"Answer for candidate {missing[0]} is missing."]
                continue
            problems = {
                c: _answer_error(q, v, candidate_ids) for c, v in value.items() if v is not None
            }
            bad = [(c, p) for c, p in problems.items() if p]
            if bad:
                errors[f"answers.{key}"] = [f"Candidate {bad[0][0]}: {bad[0][1]}"]
                continue
            clean[key] = {c: value[c] for c in wanted if value.get(c) is not None}
            continue
        problem = _answer_error(q, value, candidate_ids)
        if problem:
            errors[f"answers.{key}"] = [problem]
            continue
        clean[key] = value
    if errors:
        raise ValidationError(errors)
    return clean


def answers_by_candidate(schema: list[dict], answers: dict, *, candidate_ids: list[int]) -> dict:
    """Answers that name shown candidates by display position (as raters send them, see
    ``annotation.selectors.item_payloads``) turned into answers by candidate id (as stored).

    ``candidate_ids``: the item's candidates in display order. Assumes ``answers`` passed
    ``validate_answers`` with ``candidate_ids=list(range(len(candidate_ids)))``.
    """
    return _renamed(schema, answers, dict(enumerate(candidate_ids)))


def answers_by_position(schema: list[dict], answers: dict, *, candidate_ids: list[int]) -> dict:
    """The inverse of ``answers_by_candidate``: stored answers as the rater sees them."""
    return _renamed(schema, answers, {c: p for p, c in enumerate(candidate_ids)})


def _renamed(schema: list[dict], answers: dict, rename: dict[int, int]) -> dict:
    out = dict(answers)
    for q in schema:
        value = answers.get(q["key"])
        if value is None:
            continue
        if q["per_candidate"]:
            out[q["key"]] = {str(rename[int(c)]): v for c, v in value.items()}
        elif q["type"] == "pick":
            out[q["key"]] = rename[value]
    return out
