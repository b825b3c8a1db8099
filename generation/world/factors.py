"""Every factor of the sticker world, in one place.

A new subject, colour, expression or motion is one entry here (a subject names its drawing
function in ``shapes``; a motion names its per-frame transform in ``motions``). Everything else
(renderer, captions, oracle heads, samplers) reads these tables.

Sticker style, as the Style Tailoring paper asks of a sticker, is the conjunction of four parts:
a transparent background, a thick white outline, flat colours, and a subject centred and whole.
Every other value of those parts is one way weak data fails.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Subject:
    name: str
    category: str  # "face" | "animal" | "object"
    words: tuple[str, ...]  # synonyms used in captions; the first is the canonical word
    shape: str  # drawing function in shapes.SHAPES
    has_face: bool  # whether it wears an expression (and can blink)


@dataclass(frozen=True)
class Colour:
    name: str
    words: tuple[str, ...]
    rgb: tuple[int, int, int]


@dataclass(frozen=True)
class Motion:
    name: str
    words: tuple[str, ...]  # present participles: "a red star, spinning"


SUBJECTS: tuple[Subject, ...] = (
    Subject("face", "face", ("face", "smiley", "emoji"), "face", True),
    Subject("cat", "animal", ("cat", "kitty", "kitten"), "cat", True),
    Subject("bear", "animal", ("bear", "teddy"), "bear", True),
    Subject("frog", "animal", ("frog", "toad"), "frog", True),
    Subject("fish", "animal", ("fish", "goldfish"), "fish", False),
    Subject("bird", "animal", ("bird", "chick", "birdie"), "bird", False),
    Subject("ghost", "face", ("ghost", "spook"), "ghost", True),
    Subject("heart", "object", ("heart", "love"), "heart", False),
    Subject("star", "object", ("star", "starlet"), "star", False),
    Subject("sun", "object", ("sun", "sunshine"), "sun", True),
    Subject("cloud", "object", ("cloud", "raincloud"), "cloud", True),
    Subject("cup", "object", ("cup", "mug"), "cup", False),
    Subject("flower", "object", ("flower", "blossom", "daisy"), "flower", False),
    Subject("moon", "object", ("moon", "crescent"), "moon", False),
)

COLOURS: tuple[Colour, ...] = (
    Colour("red", ("red", "crimson", "scarlet"), (220, 40, 40)),
    Colour("orange", ("orange", "tangerine"), (245, 140, 20)),
    Colour("yellow", ("yellow", "golden", "lemon"), (245, 215, 30)),
    Colour("green", ("green", "lime", "emerald"), (50, 175, 60)),
    Colour("blue", ("blue", "azure", "cobalt"), (40, 90, 220)),
    Colour("purple", ("purple", "violet", "lilac"), (145, 60, 200)),
    Colour("pink", ("pink", "rosy"), (245, 120, 180)),
    Colour("brown", ("brown", "chocolate"), (130, 80, 40)),
)

# Expressions apply to subjects with a face; the others have expression None.
EXPRESSIONS: dict[str, tuple[str, ...]] = {
    "happy": ("happy", "smiling", "cheerful"),
    "sad": ("sad", "unhappy", "gloomy"),
    "surprised": ("surprised", "shocked", "astonished"),
    "angry": ("angry", "grumpy", "furious"),
    "sleepy": ("sleepy", "drowsy", "tired"),
}

# The four parts of sticker style; the first value of each is the in-style one.
STYLE_PARTS: dict[str, tuple[str, ...]] = {
    "background": ("transparent", "opaque", "textured"),
    "outline": ("white", "none", "thin"),
    "finish": ("flat", "shaded", "noisy"),
    "placement": ("centred", "offcentre", "cropped"),
}
IN_STYLE: dict[str, str] = {part: values[0] for part, values in STYLE_PARTS.items()}

# Words a caption may use to describe each style value (weak captions sometimes say how an image
# looks, which is what a prompt-engineered template leans on).
STYLE_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "background": {
        "transparent": ("transparent background", "die-cut"),
        "opaque": ("plain background", "on a coloured card"),
        "textured": ("busy background", "patterned background"),
    },
    "outline": {
        "white": ("white outline", "white border"),
        "none": ("no outline", "borderless"),
        "thin": ("thin black outline", "ink outline"),
    },
    "finish": {
        "flat": ("flat colours", "flat vector"),
        "shaded": ("shaded", "3d shading"),
        "noisy": ("grainy", "noisy texture"),
    },
    "placement": {
        "centred": ("centred", "whole"),
        "offcentre": ("off-centre", "in the corner"),
        "cropped": ("cropped", "cut off"),
    },
}

MOTIONS: tuple[Motion, ...] = (
    Motion("bounce", ("bouncing", "hopping", "jumping")),
    Motion("spin", ("spinning", "rotating", "twirling")),
    Motion("pulse", ("pulsing", "throbbing", "beating")),
    Motion("shake", ("shaking", "trembling", "wobbling")),
    Motion("wave", ("waving", "swaying", "rocking")),
    Motion("blink", ("blinking", "twinkling", "winking")),
)
# A still clip is what weak video data is full of; the motion oracle must tell it apart.
STILL = "still"
SMOOTHNESS: tuple[str, ...] = ("smooth", "jerky")

FRAMES = 8
SIZE = 64

SUBJECT_NAMES = tuple(subject.name for subject in SUBJECTS)
COLOUR_NAMES = tuple(colour.name for colour in COLOURS)
EXPRESSION_NAMES = tuple(EXPRESSIONS)
MOTION_NAMES = tuple(motion.name for motion in MOTIONS)
FACE_SUBJECTS = tuple(subject.name for subject in SUBJECTS if subject.has_face)

SUBJECT_BY_NAME = {subject.name: subject for subject in SUBJECTS}
COLOUR_BY_NAME = {colour.name: colour for colour in COLOURS}
MOTION_BY_NAME = {motion.name: motion for motion in MOTIONS}


class WorldError(ValueError):
    """A factor value the world does not have; ``field`` names the factor."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def check_choice(field: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise WorldError(
            field, f"`{field}` has to be one of {', '.join(choices)} but is {value!r}."
        )
    return value  # type: ignore[return-value]
