"""Campaign set-up: presets, settings, items from groups and from selections, start/pause/close."""

import pytest
from django.core.exceptions import ValidationError

from annotation.models import Campaign, CampaignMembership, Item, ItemCandidate, Lease
from annotation.schema import preset_questions
from annotation.services.campaigns import (
    campaign_close,
    campaign_create,
    campaign_pause,
    campaign_start,
    campaign_update,
)
from annotation.services.items import (
    campaign_items_add,
    campaign_items_from_selection,
    item_overlap_target_set,
)
from annotation.services.rating import item_next_for_rater, judgment_submit
from generation.models import ModelKind
from stickerloop.errors import ServiceConflict
from tests import factories as f

pytestmark = pytest.mark.django_db


def _errors(call) -> dict:
    with pytest.raises(ValidationError) as info:
        call()
    return info.value.message_dict


def test_create_from_the_kinds_preset(curator):
    r = f.rater("ann")
    campaign = campaign_create(
        name="Style round 1",
        kind="single",
        preset="style",
        overlap=3,
        raters=[r],
        created_by=curator,
    )
    assert campaign.status == "draft"
    assert campaign.question_schema == preset_questions("style")
    assert (campaign.overlap, campaign.max_overlap, campaign.lease_seconds) == (3, 3, 600)
    assert list(CampaignMembership.objects.values_list("rater__username", "status")) == [
        ("ann", "active")
    ]
    pair = campaign_create(name="AB", kind="pair")
    assert pair.preset == "pairwise"


@pytest.mark.parametrize(
    ("kwargs", "errors"),
    [
        ({"overlap": 0}, {"overlap": ["Must be an integer from 1 to 50, not 0."]}),
        (
            {"overlap": 3, "max_overlap": 2},
            {"max_overlap": ["Must be an integer from overlap (3) to 50, not 2."]},
        ),
        ({"lease_seconds": 5}, {"lease_seconds": ["Must be an integer from 10 to 86400, not 5."]}),
        ({"gold_rate": 1.5}, {"gold_rate": ["Must be a number from 0 to 1, not 1.5."]}),
        (
            {"preset": "pairwise"},
            {"preset": ["The pairwise preset is for pair campaigns, not single."]},
        ),
        ({"preset": "custom"}, {"question_schema": ["A custom campaign needs questions."]}),
        (
            {"question_schema": [{"key": "x", "type": "pick", "label": "Best"}]},
            {
                "question_schema": [
                    "Question 1 ('x'): a pick question needs a campaign that shows several "
                    "candidates."
                ]
            },
        ),
        ({"name": " "}, {"name": ["A campaign needs a name."]}),
    ],
)
def test_bad_settings_store_nothing(kwargs, errors):
    values = {"name": "c", "kind": "single", **kwargs}
    assert _errors(lambda: campaign_create(**values)) == errors
    assert Campaign.objects.count() == 0


def test_raters_must_hold_the_rater_role(curator):
    assert _errors(lambda: campaign_create(name="c", kind="single", raters=[curator])) == {
        "raters": ["User(s) curator do not hold the rater role."]
    }
    assert Campaign.objects.count() == 0


def _creation_ranks(items: list[Item]) -> list[int]:
    """Each item's place in creation (id) order."""
    ids = sorted(i.pk for i in items)
    return [ids.index(i.pk) for i in items]


def test_items_record_a_seeded_random_order():
    left_model, right_model = f.model_version("old"), f.model_version("new")
    campaign = campaign_create(name="ab", kind="pair")
    groups = [[f.sticker(version=left_model), f.sticker(version=right_model)] for _ in range(12)]
    items = campaign_items_add(campaign=campaign, candidate_groups=groups, seed=3)
    orders = [item.candidate_ids_in_order() for item in items]
    # Every item shows its own two candidates; the sides are shuffled, not always the same.
    assert [sorted(o) for o in orders] == [sorted(c.pk for c in g) for g in groups]
    assert len({o[0] == g[0].pk for o, g in zip(orders, groups, strict=True)}) == 2
    sides = list(
        ItemCandidate.objects.filter(item=items[0])
        .order_by("position")
        .values_list("side", "candidate__model_version__name")
    )
    assert [s for s, _ in sides] == ["left", "right"]
    assert {m for _, m in sides} == {"old", "new"}
    again = campaign_items_add(
        campaign=campaign_create(name="ab2", kind="pair"), candidate_groups=groups, seed=3
    )
    assert [i.candidate_ids_in_order() for i in again] == orders
    # The items are created in a seeded order of their own, so ids do not follow the groups
    # (nor whatever built them); the returned items still do.
    assert _creation_ranks(items) == [3, 0, 9, 8, 5, 1, 11, 2, 4, 7, 10, 6]
    assert _creation_ranks(again) == _creation_ranks(items)
    assert {i.overlap_target for i in items} == {1}


def test_group_sizes_are_checked():
    campaign = campaign_create(name="s", kind="single")
    a, b = f.sticker(), f.sticker()
    assert _errors(
        lambda: campaign_items_add(campaign=campaign, candidate_groups=[[a], [a, b]])
    ) == {"candidate_groups": ["Group 2: a single item shows 1 candidate(s), not 2."]}
    best = campaign_create(name="b", kind="best_of_n")
    assert _errors(lambda: campaign_items_add(campaign=best, candidate_groups=[[a, b]])) == {
        "candidate_groups": ["Group 1: best-of-N items show animations."]
    }
    assert Item.objects.count() == 0


def _pair_selection():
    old, new = f.model_version("v1"), f.model_version("v2")
    prompts = [f.prompt(f"a cat {i}", tags=("animals",)) for i in range(3)]
    made = {}
    for p in prompts:
        for seed in (1, 2):
            for version in (old, new):
                made[(p.pk, seed, version.name)] = f.sticker(
                    version=version, on_prompt=p, seed=seed
                )
    # One candidate without a counterpart: v2 never made seed 3 of the first prompt.
    made[(prompts[0].pk, 3, "v1")] = f.sticker(version=old, on_prompt=prompts[0], seed=3)
    return old, new, prompts, made


def test_pair_items_pair_prompt_and_seed_across_two_versions():
    old, new, prompts, made = _pair_selection()
    campaign = campaign_create(name="v1 vs v2", kind="pair")
    items = campaign_items_from_selection(
        campaign=campaign, model_versions=[old.pk, new.pk], seed=1
    )
    assert len(items) == 6
    pairs = {
        frozenset(ItemCandidate.objects.filter(item=i).values_list("candidate_id", flat=True))
        for i in items
    }
    assert pairs == {
        frozenset({made[(p.pk, s, "v1")].pk, made[(p.pk, s, "v2")].pk})
        for p in prompts
        for s in (1, 2)
    }
    campaign.refresh_from_db()
    assert campaign.selection["model_versions"] == [old.pk, new.pk]
    # The same selection again adds nothing new.
    assert _errors(
        lambda: campaign_items_from_selection(campaign=campaign, model_versions=[old.pk, new.pk])
    ) == {
        "selection": [
            "The selection makes no new items. 1 candidate(s) had no counterpart "
            "with the same prompt and seed."
        ]
    }


def test_selection_by_tag_and_kind_for_single_items():
    tagged = f.prompt("a dog", tags=("animals",))
    other = f.prompt("a car", tags=("vehicles",))
    dog = f.sticker(on_prompt=tagged)
    f.sticker(on_prompt=other)
    f.animation(source=dog)
    campaign = campaign_create(name="dogs", kind="single")
    items = campaign_items_from_selection(
        campaign=campaign, prompt_tags=["animals"], candidate_kind="sticker"
    )
    assert [i.candidate_ids_in_order() for i in items] == [[dog.pk]]
    assert _errors(
        lambda: campaign_items_from_selection(campaign=campaign, prompt_tags=["nothing"])
    ) == {"selection": ["The selection matches no candidates."]}


def test_best_of_n_groups_teacher_animations_of_one_source():
    source = f.sticker(on_prompt=f.prompt("a frog"))
    teachers = [f.model_version(f"teacher-{i}", kind=ModelKind.ANIMATION) for i in range(3)]
    animations = [f.animation(source=source, version=t) for t in teachers]
    campaign = campaign_create(name="teachers", kind="best_of_n")
    [item] = campaign_items_from_selection(
        campaign=campaign, model_versions=[t.pk for t in teachers]
    )
    assert sorted(item.candidate_ids_in_order()) == [a.pk for a in animations]
    assert campaign.question_schema == preset_questions("teacher_selection")


def _two_teachers_two_seeds():
    source = f.sticker(on_prompt=f.prompt("a frog"))
    teachers = [f.model_version(f"teacher-{i}", kind=ModelKind.ANIMATION) for i in range(2)]
    made = {
        (seed, t.name): f.animation(source=source, version=t, seed=seed)
        for seed in (0, 1)
        for t in teachers
    }
    return teachers, made


def test_best_of_n_items_hold_the_group_size_asked_for():
    # given: two teachers animated one sticker with two seeds each (the demo's animation batch)
    teachers, made = _two_teachers_two_seeds()
    campaign = campaign_create(name="teachers", kind="best_of_n")
    # when: the curator asks for 4 animations per item
    [item] = campaign_items_from_selection(
        campaign=campaign, model_versions=[t.pk for t in teachers], group_size=4
    )
    # then: one item shows all four, both teachers in it
    assert sorted(item.candidate_ids_in_order()) == sorted(c.pk for c in made.values())


def test_best_of_n_without_a_group_size_makes_an_item_per_seed():
    teachers, made = _two_teachers_two_seeds()
    campaign = campaign_create(name="teachers", kind="best_of_n")
    items = campaign_items_from_selection(
        campaign=campaign, model_versions=[t.pk for t in teachers]
    )
    assert [sorted(i.candidate_ids_in_order()) for i in items] == [
        sorted([made[(0, "teacher-0")].pk, made[(0, "teacher-1")].pk]),
        sorted([made[(1, "teacher-0")].pk, made[(1, "teacher-1")].pk]),
    ]


def test_best_of_n_leaves_out_animations_short_of_a_full_item():
    teachers, made = _two_teachers_two_seeds()
    campaign = campaign_create(name="teachers", kind="best_of_n")
    # Seed then model: the item of 3 mixes both teachers; the fourth animation makes no item.
    [item] = campaign_items_from_selection(
        campaign=campaign, model_versions=[t.pk for t in teachers], group_size=3
    )
    assert sorted(item.candidate_ids_in_order()) == sorted(
        [made[(0, "teacher-0")].pk, made[(0, "teacher-1")].pk, made[(1, "teacher-0")].pk]
    )
    assert _errors(
        lambda: campaign_items_from_selection(
            campaign=campaign, model_versions=[t.pk for t in teachers], group_size=3
        )
    ) == {
        "selection": [
            "The selection makes no new items. 1 animation(s) did not fill an item of 3 from "
            "their source."
        ]
    }


def test_group_size_fits_the_campaign_kind():
    teachers, _ = _two_teachers_two_seeds()
    best = campaign_create(name="teachers", kind="best_of_n")
    single = campaign_create(name="one", kind="single")
    versions = [t.pk for t in teachers]
    assert _errors(
        lambda: campaign_items_from_selection(campaign=best, model_versions=versions, group_size=9)
    ) == {"group_size": ["Must be from 2 to 8."]}
    assert _errors(
        lambda: campaign_items_from_selection(
            campaign=single, model_versions=versions, group_size=2
        )
    ) == {"group_size": ["Only best-of-N and set campaigns take a group size."]}
    assert Item.objects.count() == 0


def test_set_items_group_one_prompt():
    p = f.prompt("a castle")
    version = f.model_version("base")
    stickers = [f.sticker(version=version, on_prompt=p, seed=s) for s in range(5)]
    campaign = campaign_create(name="diversity", kind="set")
    items = campaign_items_from_selection(
        campaign=campaign, model_versions=[version.pk], group_size=4
    )
    # 5 candidates in groups of 4: one set of 4; the single leftover makes no set.
    assert [sorted(i.candidate_ids_in_order()) for i in items] == [[s.pk for s in stickers[:4]]]


def test_start_pause_close():
    r = f.rater()
    campaign = campaign_create(name="c", kind="single", raters=[r])
    with pytest.raises(ServiceConflict, match="has no items yet"):
        campaign_start(campaign=campaign)
    campaign_items_add(campaign=campaign, candidate_groups=[[f.sticker()]])
    campaign = campaign_start(campaign=campaign)
    assert campaign.status == "running" and campaign.started_at is not None
    item_next_for_rater(campaign=campaign, rater=r)
    assert campaign_pause(campaign=campaign).status == "paused"
    closed = campaign_close(campaign=campaign)
    assert closed.status == "closed" and closed.closed_at is not None
    assert list(Lease.objects.values_list("released", flat=True)) == [True]
    assert list(Item.objects.values_list("leased_count", "is_open")) == [(0, True)]
    with pytest.raises(ServiceConflict, match="is closed already"):
        campaign_close(campaign=campaign)


def test_edits_after_start_are_limited():
    r = f.rater()
    campaign = f.running_campaign(raters=[r], n_items=1)
    with pytest.raises(ServiceConflict) as info:
        campaign_update(campaign=campaign, overlap=3)
    assert str(info.value) == (
        f"Campaign {campaign.name!r} has started; overlap can no longer change."
    )
    campaign_update(campaign=campaign, guidelines="# Be kind")
    campaign.refresh_from_db()
    assert (campaign.guidelines, campaign.overlap) == ("# Be kind", 1)


def test_draft_edit_moves_item_targets():
    campaign = campaign_create(name="c", kind="single")
    campaign_items_add(campaign=campaign, candidate_groups=[[f.sticker()]])
    campaign_update(
        campaign=campaign,
        overlap=4,
        question_schema=[{"key": "ok", "type": "binary", "label": "OK?"}],
    )
    campaign.refresh_from_db()
    assert (campaign.overlap, campaign.max_overlap, campaign.preset) == (4, 4, "custom")
    assert list(Item.objects.values_list("overlap_target", flat=True)) == [4]


def test_adaptive_overlap_raises_an_item_target():
    r = f.rater()
    campaign = f.running_campaign(raters=[r], n_items=1, overlap=1, max_overlap=3)
    [item] = item_next_for_rater(campaign=campaign, rater=r)
    judgment_submit(
        item=item,
        rater=r,
        answers={"aligned": True},
        client_id="00000000-0000-4000-8000-000000000001",
        seconds_on_item=1,
    )
    item.refresh_from_db()
    assert item.is_open is False
    item = item_overlap_target_set(item=item, target=3)
    assert (item.overlap_target, item.is_open) == (3, True)
    assert _errors(lambda: item_overlap_target_set(item=item, target=4)) == {
        "target": ["Must be from 1 to the campaign's max overlap (3), not 4."]
    }
