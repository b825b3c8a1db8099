"""Campaigns asking several presets' questions, made on the campaign page without JSON."""

import time

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from annotation.models import Campaign
from annotation.schema import PRESETS, preset_questions, presets_questions
from annotation.services.campaigns import campaign_create
from tests import factories as f
from tests.conftest import logged_in, run_at_once

ALIGNMENT_STYLE_MOTION_KEYS = [
    "aligned",
    "missing",
    "style_pass",
    "defects",
    "motion_present",
    "motion_big_enough",
    "motion_relevant",
    "subject_consistent",
    "artifact_free",
    "loops_smoothly",
    "style_kept",
    "overall",
    "note",
]


def _form(**changes) -> dict:
    body = {
        "name": "Look and move",
        "kind": "single",
        "presets": ["alignment", "style", "motion"],
        "overlap": 2,
        "lease_seconds": 600,
        "gold_rate": 0,
    }
    body.update(changes)
    return body


# The combination ---------------------------------------------------------------------------------


def test_presets_combine_in_order_and_ask_the_shared_note_once_last():
    questions = presets_questions(["alignment", "style", "motion"], kind="single")

    assert [q["key"] for q in questions] == ALIGNMENT_STYLE_MOTION_KEYS
    by_key = {q["key"]: q for q in questions}
    assert by_key["aligned"] == preset_questions("alignment")[0]
    assert by_key["defects"] == preset_questions("style")[1]
    assert by_key["note"] == preset_questions("motion")[-1]


def test_presets_combine_in_the_order_ticked():
    questions = presets_questions(["style", "alignment"], kind="single")

    assert [q["key"] for q in questions] == ["style_pass", "defects", "aligned", "missing", "note"]


@pytest.mark.parametrize(
    ("presets", "kind", "problems"),
    [
        ([], "single", ["Tick at least one preset."]),
        (
            ["alignment", "pairwise"],
            "single",
            [
                "The pairwise comparison preset is for side-by-side pair campaigns, not single "
                "candidate ones."
            ],
        ),
        (["alignment", "alignment"], "single", ["A preset is ticked twice."]),
        (
            ["custom"],
            "single",
            [
                "'custom' is not a preset; use one of alignment, style, motion, pairwise, "
                "teacher_selection, diversity."
            ],
        ),
    ],
)
def test_presets_that_do_not_fit_are_refused_in_words(presets, kind, problems):
    with pytest.raises(ValidationError) as caught:
        presets_questions(presets, kind=kind)

    assert caught.value.message_dict == {"presets": problems}


def test_two_presets_asking_one_key_differently_are_refused(monkeypatch):
    # given: a preset whose "aligned" question is not the alignment preset's
    other = {"kinds": ["single"], "questions": [{"key": "aligned", "type": "likert", "label": "?"}]}
    monkeypatch.setitem(PRESETS, "diversity", other)

    with pytest.raises(ValidationError) as caught:
        presets_questions(["alignment", "diversity"], kind="single")

    assert caught.value.message_dict == {
        "presets": [
            "The alignment and diversity presets both ask 'aligned', differently; tick only one "
            "of them."
        ]
    }


@pytest.mark.django_db
def test_campaign_create_stores_the_combination():
    campaign = campaign_create(name="Both", kind="single", presets=["alignment", "style"])

    assert (campaign.preset, campaign.presets) == ("custom", ["alignment", "style"])
    assert campaign.question_schema == presets_questions(["alignment", "style"], kind="single")


@pytest.mark.django_db
def test_one_preset_in_presets_is_that_preset():
    campaign = campaign_create(name="One", kind="single", presets=["style"])

    assert (campaign.preset, campaign.presets) == ("style", ["style"])
    assert campaign.question_schema == preset_questions("style")


@pytest.mark.django_db
def test_a_preset_campaign_and_a_custom_one_record_their_presets():
    by_preset = campaign_create(name="Preset", kind="single", preset="alignment")
    custom = campaign_create(
        name="Custom",
        kind="single",
        question_schema=[{"key": "ok", "type": "binary", "label": "OK?"}],
    )

    assert by_preset.presets == ["alignment"]
    assert (custom.preset, custom.presets) == ("custom", [])


@pytest.mark.django_db
def test_presets_and_questions_together_are_refused():
    with pytest.raises(ValidationError) as caught:
        campaign_create(
            name="Both ways",
            kind="single",
            presets=["alignment"],
            question_schema=[{"key": "ok", "type": "binary", "label": "OK?"}],
        )

    assert caught.value.message_dict == {
        "question_schema": ["Tick presets or write your own questions, not both."]
    }
    assert Campaign.objects.count() == 0


# The page ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_page_offers_every_preset_as_a_checkbox(curator):
    html = logged_in(curator).get("/campaigns/new/").content.decode()

    for name in [*PRESETS, "custom"]:
        assert f'name="presets" value="{name}"' in html
    assert '<input type="checkbox" name="presets" value="alignment"' in html
    assert "Prompt alignment (for single candidate campaigns): Does the sticker show" in html
    assert "<legend>Questions</legend>" in html


@pytest.mark.django_db
def test_a_curator_ticks_three_presets_and_gets_their_questions(curator):
    client = logged_in(curator)

    response = client.post("/campaigns/new/", _form())

    campaign = Campaign.objects.get()
    assert (response.status_code, response["Location"]) == (302, f"/campaigns/{campaign.pk}/")
    assert [q["key"] for q in campaign.question_schema] == ALIGNMENT_STYLE_MOTION_KEYS
    assert campaign.presets == ["alignment", "style", "motion"]
    page = client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "<dt>Questions from</dt><dd>alignment + style + motion</dd>" in page


@pytest.mark.django_db
def test_a_preset_that_does_not_fit_the_kind_is_named_next_to_the_boxes(curator):
    client = logged_in(curator)

    response = client.post(
        "/campaigns/new/", _form(name="Typed name", presets=["alignment", "pairwise"])
    )

    assert response.status_code == 400
    assert response.context["form"].errors == {
        "presets": [
            "The pairwise comparison preset is for side-by-side pair campaigns, not single "
            "candidate ones."
        ]
    }
    html = response.content.decode()
    # The message sits inside the presets' fieldset, and what was typed and ticked is kept.
    fieldset = html[html.index("<legend>Questions</legend>") : html.index("</fieldset>")]
    assert "is for side-by-side pair campaigns" in fieldset
    assert 'value="Typed name"' in html
    assert 'value="pairwise" aria-invalid="true" id="id_presets_3" checked' in fieldset
    assert fieldset.count(" checked") == 2
    assert Campaign.objects.count() == 0


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        ({"presets": []}, {"presets": ["Tick at least one preset, or Custom."]}),
        (
            {"presets": ["custom", "style"]},
            {
                "presets": [
                    "Custom cannot be combined with presets: tick Custom alone and write every "
                    "question below, or untick it."
                ]
            },
        ),
        (
            {"presets": ["style"], "question_schema": '[{"key": "ok"}]'},
            {
                "question_schema": [
                    "Questions written here are used only with Custom ticked; tick Custom "
                    "alone, or empty this box."
                ]
            },
        ),
        ({"presets": ["custom"]}, {"question_schema": ["A custom campaign needs questions."]}),
    ],
)
@pytest.mark.django_db
def test_the_page_refuses_presets_and_questions_that_do_not_go_together(curator, changes, errors):
    response = logged_in(curator).post("/campaigns/new/", _form(**changes))

    assert response.status_code == 400
    assert response.context["form"].errors == errors
    assert Campaign.objects.count() == 0


@pytest.mark.django_db
def test_custom_alone_still_takes_json_questions(curator):
    response = logged_in(curator).post(
        "/campaigns/new/",
        _form(
            presets=["custom"], question_schema='[{"key": "ok", "type": "binary", "label": "OK?"}]'
        ),
    )

    campaign = Campaign.objects.get()
    assert response.status_code == 302
    assert (campaign.preset, campaign.presets) == ("custom", [])
    assert [q["key"] for q in campaign.question_schema] == ["ok"]


@pytest.mark.django_db
def test_the_form_sent_twice_makes_one_campaign(curator):
    client = logged_in(curator)

    first = client.post("/campaigns/new/", _form())
    second = client.post("/campaigns/new/", _form())

    assert first.status_code == 302
    assert second.status_code == 400
    assert second.context["form"].errors == {
        "name": ["A campaign named 'Look and move' exists already."]
    }
    assert Campaign.objects.count() == 1


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_the_form_sent_twice_at_once_makes_one_campaign():
    # given: two requests of one double click, from one curator's session
    curator = f.user("curator", ["curator"])
    clients = [Client() for _ in range(2)]
    for client in clients:
        client.force_login(curator)

    results, errors = run_at_once(
        [lambda c=c: c.post("/campaigns/new/", _form()).status_code for c in clients], timeout=30
    )

    assert errors == []
    assert sorted(results) == [302, 400]
    assert Campaign.objects.count() == 1


@pytest.mark.django_db
def test_editing_shows_the_ticked_presets_and_changes_them(curator):
    client = logged_in(curator)
    campaign = campaign_create(name="Edit me", kind="single", presets=["alignment", "style"])

    form = client.get(f"/campaigns/{campaign.pk}/edit/").content.decode()
    response = client.post(
        f"/campaigns/{campaign.pk}/edit/", _form(name="Edit me", presets=["style", "motion"])
    )

    assert 'value="alignment" id="id_presets_0" checked' in form
    assert 'value="style" id="id_presets_1" checked' in form
    assert 'value="motion" id="id_presets_2" checked' not in form
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.presets == ["style", "motion"]
    assert [q["key"] for q in campaign.question_schema] == ALIGNMENT_STYLE_MOTION_KEYS[2:]


@pytest.mark.django_db
def test_the_api_takes_presets_too(api, curator):
    response = api(curator).post(
        "/api/campaigns/create/",
        {"name": "Via API", "kind": "single", "presets": ["alignment", "motion"]},
        format="json",
    )

    assert response.status_code == 201, response.json()
    assert response.json()["presets"] == ["alignment", "motion"]
    assert response.json()["preset"] == "custom"


@pytest.mark.django_db
def test_the_new_campaign_page_is_fast_and_its_queries_pinned(curator, django_assert_num_queries):
    client = logged_in(curator)
    f.raters(30)
    client.get("/campaigns/new/")

    # session, user, roles (once), the rater list for the raters field
    with django_assert_num_queries(4):
        response = client.get("/campaigns/new/")
    best = min(_timed(client, "/campaigns/new/") for _ in range(3))

    assert response.status_code == 200
    assert best < 0.3


def _timed(client, url: str) -> float:
    start = time.perf_counter()
    assert client.get(url).status_code == 200
    return time.perf_counter() - start


@pytest.mark.django_db
def test_the_api_names_presets_that_do_not_fit(api, curator):
    response = api(curator).post(
        "/api/campaigns/create/",
        {"name": "Via API", "kind": "pair", "presets": ["pairwise", "style"]},
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {
        "presets": [
            "The sticker style preset is for single candidate campaigns, not side-by-side pair "
            "ones."
        ]
    }
    assert Campaign.objects.count() == 0
