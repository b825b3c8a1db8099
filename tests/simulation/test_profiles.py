"""Hidden profiles: counts from shares or from the command line, their order from the seed."""

import pytest

from simulation.profiles import (
    PROFILES,
    ProfileError,
    assign_profiles,
    mix_counts,
    parse_mix,
    rater_rng,
    think_seconds,
)


def test_the_default_mix_of_40_raters():
    assert mix_counts(40) == {
        "reliable": 18,
        "sloppy": 6,
        "pass_biased": 4,
        "spammer": 4,
        "adversarial": 3,
        "slow": 2,
        "fast": 3,
    }
    assert sum(mix_counts(7).values()) == 7
    # 1.8, 0.6, 0.4, 0.4, ...: floors, then the largest remainders (ties in table order).
    assert mix_counts(4) == {
        "reliable": 2,
        "sloppy": 1,
        "pass_biased": 1,
        "spammer": 0,
        "adversarial": 0,
        "slow": 0,
        "fast": 0,
    }


def test_profiles_come_from_the_seed():
    counts = {"reliable": 3, "spammer": 2, "adversarial": 1}

    first = assign_profiles(seed=7, counts=counts)

    assert first == assign_profiles(seed=7, counts=counts)
    assert sorted(first) == [
        "adversarial",
        "reliable",
        "reliable",
        "reliable",
        "spammer",
        "spammer",
    ]
    orders = {tuple(assign_profiles(seed=seed, counts=counts)) for seed in range(20)}
    assert len(orders) > 1
    assert [rater_rng(seed=7, index=i).random() for i in range(3)] == [
        rater_rng(seed=7, index=i).random() for i in range(3)
    ]
    assert rater_rng(seed=7, index=0).random() != rater_rng(seed=8, index=0).random()


def test_parse_mix_counts():
    assert parse_mix("reliable=3, spammer=1", raters=4) == {"reliable": 3, "spammer": 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "reliable=3,lazy=1",
            "Unknown profile 'lazy'; use reliable, sloppy, pass_biased, "
            "spammer, adversarial, slow, fast.",
        ),
        ("reliable=3,reliable=1", "Profile 'reliable' is named twice."),
        ("reliable", "Profile 'reliable' needs a count, as in reliable=4, not 'reliable'."),
        ("reliable=3", "The profiles add up to 3 raters, not the 4 asked for."),
    ],
)
def test_parse_mix_refuses(text, message):
    with pytest.raises(ProfileError) as caught:
        parse_mix(text, raters=4)

    assert str(caught.value) == message


def test_think_seconds_centre_on_the_profile_and_stay_in_bounds():
    rng = rater_rng(seed=1, index=0)
    times = sorted(think_seconds(PROFILES["slow"], rng) for _ in range(2001))

    assert 8.0 < times[1000] < 10.0
    assert times[0] >= 0.2 and times[-1] <= 60.0
    spammer = [think_seconds(PROFILES["spammer"], rng) for _ in range(200)]
    assert sum(t < 1.0 for t in spammer) / 200 > 0.8
