"""What an experiment asks raters, and which question feeds which axis.

The rating campaign shows one candidate per item and asks the pass/fail questions of the
presets (alignment and style for stickers; motion and consistency with the source sticker for
animations), so that a pass rate per arm reads straight off the consensus. The pair campaign is
the ``pairwise`` preset: each arm against the base arm, one question per win-rate axis.
"""

from copy import deepcopy

from annotation.models import Preset
from annotation.schema import PRESETS
from generation.models import ModelKind
from training_bridge.experiments.models import Axis


def _preset_question(preset: str, key: str, **changes) -> dict:
    question = next(q for q in PRESETS[preset]["questions"] if q["key"] == key)
    return {**deepcopy(question), **changes}


RATING_QUESTIONS = {
    ModelKind.IMAGE: [
        _preset_question(Preset.ALIGNMENT, "aligned"),
        _preset_question(Preset.STYLE, "style_pass"),
    ],
    ModelKind.ANIMATION: [
        # The teacher-selection question, asked of one animation at a time.
        _preset_question(Preset.TEACHER_SELECTION, "motion_pass", per_candidate=False),
        _preset_question(
            Preset.MOTION,
            "subject_consistent",
            label="Is it still the source sticker?",
            help="Same subject, colours and outline as the source sticker throughout; no "
            "identity drift, no melting.",
        ),
    ],
}
PASS_RATE_QUESTIONS = {
    Axis.ALIGNMENT: "aligned",
    Axis.STYLE: "style_pass",
    Axis.MOTION: "motion_pass",
    Axis.CONSISTENCY: "subject_consistent",
}
WIN_RATE_QUESTIONS = {
    Axis.WIN_ALIGNMENT: "alignment",
    Axis.WIN_STYLE: "style",
    Axis.WIN_MOTION: "motion",
    Axis.WIN_OVERALL: "overall",
}
RATING_GUIDELINES = {
    ModelKind.IMAGE: "Judge each sticker on its own, against the prompt shown: does it show what "
    "the prompt asks, and is it a good sticker? The stickers come from several models; which "
    "model made one is not shown.",
    ModelKind.ANIMATION: "Judge each animation on its own: is the motion good, and is it still "
    "the source sticker it was made from? The animations come from several models; which model "
    "made one is not shown.",
}
PAIR_GUIDELINES = (
    "Two candidates made from the same prompt (or source sticker) with the same seed by two "
    "models. Which is better for each question? Ties are fine; answer motion for animations only."
)
