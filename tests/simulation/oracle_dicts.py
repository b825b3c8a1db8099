"""Hand-written oracle verdicts, shaped as ``generation.world.oracle.Oracle`` returns them."""

from generation.world import factors

NONE = "none"


def head(values: tuple[str, ...], chosen: str, p: float) -> dict[str, float]:
    """``chosen`` at ``p``, the rest of the mass spread evenly over the other values."""
    rest = (1.0 - p) / (len(values) - 1)
    return {value: p if value == chosen else rest for value in values}


def image(
    subject: str = "cat",
    colour: str = "red",
    expression: str | None = "happy",
    *,
    p: float = 0.9,
    off: dict[str, str] | None = None,
    style_yes: float | None = None,
) -> dict[str, dict[str, float]]:
    """An image verdict: content at probability ``p``; style parts in style unless ``off``
    names another value; ``sticker_style`` the product of the in-style parts (as the oracle
    computes it) unless ``style_yes`` is given."""
    out = {
        "subject": head(factors.SUBJECT_NAMES, subject, p),
        "colour": head(factors.COLOUR_NAMES, colour, p),
        "expression": head((*factors.EXPRESSION_NAMES, NONE), expression or NONE, p),
    }
    yes = 1.0
    for part, values in factors.STYLE_PARTS.items():
        out[part] = head(values, (off or {}).get(part, values[0]), p)
        yes *= out[part][values[0]]
    yes = yes if style_yes is None else style_yes
    out["sticker_style"] = {"yes": yes, "no": 1.0 - yes}
    return out


def clip(motion: str = "spin", smoothness: str = "smooth", *, p: float = 0.9) -> dict:
    return {
        "motion": head((*factors.MOTION_NAMES, factors.STILL), motion, p),
        "smoothness": head(factors.SMOOTHNESS, smoothness, p),
    }
