"""Hidden rater profiles and how a seed assigns them to raters.

A profile says how a simulated rater turns what the oracle sees into answers: how often an
answer is right, how it is wrong when it is not (another option, or the opposite one), how far
it leans towards "pass", how long it looks at an item, and how often it undoes or skips.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# How a rater is wrong: "other" picks another option at random; "opposite" picks the mirror
# image of the right one (no for yes, right for left, 5 for 1, the worst candidate for the best).
ERROR_MODES = ("other", "opposite")


@dataclass(frozen=True)
class Profile:
    name: str
    accuracy: float  # chance an answer is what the oracle sees
    error: str  # one of ERROR_MODES
    pass_bias: float = 0.0  # chance a "no" (or a Likert score under 5) is pushed up a step
    looks: bool = True  # False: answers at random without looking at the item
    seconds: float = 3.0  # median seconds on an item
    undo_rate: float = 0.02
    skip_rate: float = 0.01


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("reliable", accuracy=0.95, error="other"),
        Profile("sloppy", accuracy=0.72, error="other", seconds=2.0, undo_rate=0.01),
        Profile("pass_biased", accuracy=0.95, error="other", pass_bias=0.7, seconds=2.5),
        Profile("spammer", accuracy=0.0, error="other", looks=False, seconds=0.6, undo_rate=0.0),
        Profile("adversarial", accuracy=0.1, error="opposite", seconds=2.5, skip_rate=0.0),
        Profile("slow", accuracy=0.93, error="other", seconds=9.0, undo_rate=0.04),
        Profile("fast", accuracy=0.85, error="other", seconds=1.3),
    )
}
# The default mix, as shares of the raters; counts are rounded by largest remainder.
DEFAULT_MIX: dict[str, float] = {
    "reliable": 0.45,
    "sloppy": 0.15,
    "pass_biased": 0.1,
    "spammer": 0.1,
    "adversarial": 0.075,
    "slow": 0.05,
    "fast": 0.075,
}
# Profiles a platform's rater quality should rank at the bottom.
BAD = ("spammer", "adversarial")


class ProfileError(ValueError):
    """A profile mix that cannot be used; the message names the problem."""


def mix_counts(count: int, mix: dict[str, float] | None = None) -> dict[str, int]:
    """How many raters of each profile ``count`` raters get from shares ``mix`` (default
    ``DEFAULT_MIX``): floors first, the rest to the largest remainders, ties in table order."""
    mix = DEFAULT_MIX if mix is None else mix
    total = sum(mix.values())
    exact = {name: count * share / total for name, share in mix.items()}
    counts = {name: int(value) for name, value in exact.items()}
    order = sorted(exact, key=lambda name: -(exact[name] - counts[name]))
    for name in order[: count - sum(counts.values())]:
        counts[name] += 1
    return counts


def parse_mix(text: str, *, raters: int) -> dict[str, int]:
    """``"reliable=20,spammer=4"`` as counts; they must name known profiles and add up to
    ``raters``."""
    counts: dict[str, int] = {}
    for part in text.split(","):
        name, _, number = part.strip().partition("=")
        if name not in PROFILES:
            raise ProfileError(f"Unknown profile {name!r}; use {', '.join(PROFILES)}.")
        if name in counts:
            raise ProfileError(f"Profile {name!r} is named twice.")
        if not number.isdigit():
            raise ProfileError(f"Profile {name!r} needs a count, as in {name}=4, not {part!r}.")
        counts[name] = int(number)
    if sum(counts.values()) != raters:
        raise ProfileError(
            f"The profiles add up to {sum(counts.values())} raters, not the {raters} asked for."
        )
    return counts


def assign_profiles(*, seed: int, counts: dict[str, int]) -> list[str]:
    """One profile name per rater index: ``counts`` of each, in an order shuffled by ``seed``."""
    names = [name for name in PROFILES for _ in range(counts.get(name, 0))]
    random.Random(f"profiles:{seed}").shuffle(names)
    return names


def rater_rng(*, seed: int, index: int) -> random.Random:
    """The random stream of rater ``index`` of run ``seed``: its answers, times, undos, skips."""
    return random.Random(f"rater:{seed}:{index}")


def think_seconds(profile: Profile, rng: random.Random) -> float:
    """Seconds on one item: log-normal around the profile's median, within [0.2, 60]."""
    return round(min(60.0, max(0.2, profile.seconds * rng.lognormvariate(0.0, 0.35))), 3)
