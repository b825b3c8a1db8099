"""Animation batches with a motion prompt per source sticker: the CSV list, the batch's checks,
the chunk that reads them, the API and the page."""

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile

from generation.models import Candidate, GenerationBatch, GenerationChunk
from generation.services.batches import (
    MotionPrompt,
    generation_batch_create,
    generation_batch_plan,
    motion_prompts_parse,
)
from generation.services.chunks import generation_chunk_run
from tests import factories as f

pytestmark = pytest.mark.django_db


def test_motion_prompts_parse_reads_ids_and_prompts():
    content = 'sticker,motion prompt\n12,waves its paw\n\n13,"spins, then bows"\n14, hops, twice \n'
    assert motion_prompts_parse(content=content) == [
        MotionPrompt(source=12, text="waves its paw", where="Line 2"),
        MotionPrompt(source=13, text="spins, then bows", where="Line 4"),
        MotionPrompt(source=14, text="hops, twice", where="Line 5"),
    ]


def test_motion_prompts_parse_names_every_bad_line():
    with pytest.raises(ValidationError) as caught:
        motion_prompts_parse(content="12,waves\ncat,spins\n13\n14,  \n\u00b2,hops\n")
    assert caught.value.message_dict == {
        "motion_prompts": [
            "Line 2: the first column must be a sticker id, not 'cat'.",
            "Line 3: give a motion prompt after sticker 13.",
            "Line 4: give a motion prompt after sticker 14.",
            "Line 5: the first column must be a sticker id, not '\u00b2'.",
        ]
    }


@pytest.fixture
def stickers(models):
    return [f.sticker(version=models["sticker-base"], text=t) for t in ("a cat", "a dog", "a fox")]


def _teachers(models):
    return [models["anim-teacher-a"], models["anim-teacher-b"]]


def test_each_sticker_is_animated_with_its_own_motion_prompt(models, stickers):
    # given: a prompt for the cat, a default for the others but the fox keeps its own
    cat, dog, fox = stickers
    batch = generation_batch_create(
        kind="animation",
        sources=stickers,
        model_versions=_teachers(models),
        seeds=[5],
        params={"num_inference_steps": 2, "num_frames": 4, "motion_prompt": "bounces"},
        motion_prompts=[
            MotionPrompt(source=cat.pk, text="waves its paw", where="Line 1"),
            MotionPrompt(source=fox.pk, text="spins once", where="Line 2"),
        ],
    )
    assert batch.motion_prompts == {str(cat.pk): "waves its paw", str(fox.pk): "spins once"}
    assert batch.total == 6
    # when
    generation_batch_plan(batch_id=batch.pk)
    for chunk in GenerationChunk.objects.filter(batch=batch).order_by("index"):
        generation_chunk_run(chunk_id=chunk.pk)
    # then: every teacher made one animation per sticker, under the sticker's motion prompt
    batch.refresh_from_db()
    assert (batch.status, batch.done_count) == ("succeeded", 6)
    made = Candidate.objects.filter(batch=batch).order_by("model_version__name", "source_id")
    assert [(c.model_version.name, c.source_id, c.motion_prompt, c.frame_count) for c in made] == [
        (teacher, source.pk, prompt, 4)
        for teacher in ("anim-teacher-a", "anim-teacher-b")
        for source, prompt in ((cat, "waves its paw"), (dog, "bounces"), (fox, "spins once"))
    ]
    assert {c.raw_prompt for c in made if c.source_id == dog.pk} == {"a dog"}


def test_without_a_default_a_sticker_without_a_prompt_moves_to_its_own_prompt(models, stickers):
    cat, dog, _ = stickers
    batch = generation_batch_create(
        kind="animation",
        sources=[cat, dog],
        model_versions=[models["anim-teacher-a"]],
        seeds=[1],
        params={"num_inference_steps": 2, "num_frames": 4},
        motion_prompts=[MotionPrompt(source=cat.pk, text="naps", where="Line 1")],
    )
    generation_batch_plan(batch_id=batch.pk)
    [chunk] = GenerationChunk.objects.filter(batch=batch)
    generation_chunk_run(chunk_id=chunk.pk)
    made = Candidate.objects.filter(batch=batch).order_by("source_id")
    assert [(c.source_id, c.motion_prompt) for c in made] == [(cat.pk, "naps"), (dog.pk, "a dog")]


def test_motion_prompts_alone_choose_the_sources(models, stickers):
    cat, _, fox = stickers
    batch = generation_batch_create(
        kind="animation",
        model_versions=[models["anim-teacher-a"]],
        seeds=[1, 2],
        params={},
        motion_prompts=motion_prompts_parse(content=f"{fox.pk},spins\n{cat.pk},waves\n"),
    )
    assert list(batch.sources.order_by("pk")) == [cat, fox]
    assert batch.total == 4


def test_a_sticker_batch_has_no_motion_prompts(models, stickers):
    prompt_set = f.prompt_set(["a cat"])
    with pytest.raises(ValidationError) as caught:
        generation_batch_create(
            kind="sticker",
            prompt_set=prompt_set,
            model_versions=[models["sticker-base"]],
            seeds=[1],
            params={},
            motion_prompts=[MotionPrompt(source=stickers[0].pk, text="waves", where="Line 1")],
        )
    assert caught.value.message_dict == {
        "motion_prompts": ["Only an animation batch has motion prompts."]
    }


def test_bad_motion_prompts_name_their_lines_and_queue_nothing(
    models, stickers, django_capture_on_commit_callbacks
):
    cat, dog, fox = stickers
    animation = f.animation(source=cat, version=models["anim-teacher-a"])
    content = (
        f"{cat.pk},waves\n"
        "999999,spins\n"
        f"{animation.pk},hops\n"
        f"{cat.pk},again\n"
        f"{fox.pk},runs\n"
        "99999999999999999999,far\n"
        f"{dog.pk},a\x00b\n"
    )
    with (
        django_capture_on_commit_callbacks() as callbacks,
        pytest.raises(ValidationError) as caught,
    ):
        generation_batch_create(
            kind="animation",
            sources=[cat, dog],
            model_versions=[models["anim-teacher-a"]],
            seeds=[1],
            params={},
            motion_prompts=motion_prompts_parse(content=content),
        )
    assert caught.value.message_dict == {
        "motion_prompts": [
            "Line 2: candidate 999999 does not exist.",
            f"Line 3: candidate {animation.pk} is an animation, not a sticker.",
            f"Line 4: sticker {cat.pk} already has a motion prompt (line 1).",
            f"Line 5: sticker {fox.pk} is not among the batch's sources.",
            "Line 6: candidate 99999999999999999999 does not exist.",
            "Line 7: the motion prompt holds a NUL character.",
        ]
    }
    assert (GenerationBatch.objects.count(), callbacks) == (0, [])


# The API


def _animation_payload(models, **change) -> dict:
    return {
        "kind": "animation",
        "model_versions": [m.pk for m in _teachers(models)],
        "seeds": [1],
        "params": {"num_frames": 6, "motion_prompt": "bounces"},
        **change,
    }


def test_api_takes_motion_prompts_as_a_list(
    api, curator, models, stickers, django_capture_on_commit_callbacks
):
    cat, dog, _ = stickers
    payload = _animation_payload(
        models,
        sources=[cat.pk, dog.pk],
        motion_prompts=[{"source": cat.pk, "motion_prompt": "waves its paw"}],
    )
    with django_capture_on_commit_callbacks() as callbacks:
        response = api(curator).post("/api/batches/create/", payload, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["kind"], body["total"], body["motion_prompts"]) == (
        "animation",
        4,
        {str(cat.pk): "waves its paw"},
    )
    assert (body["params"]["num_frames"], body["params"]["motion_prompt"]) == (6, "bounces")
    assert len(callbacks) == 1


def test_api_takes_motion_prompts_as_csv(api, curator, models, stickers):
    cat, dog, _ = stickers
    payload = _animation_payload(
        models, motion_prompts_csv=f"sticker,motion_prompt\n{dog.pk},wags\n{cat.pk},waves\n"
    )
    response = api(curator).post("/api/batches/create/", payload, format="json")
    assert response.status_code == 201, response.json()
    batch = GenerationBatch.objects.get()
    assert batch.motion_prompts == {str(dog.pk): "wags", str(cat.pk): "waves"}
    assert list(batch.sources.order_by("pk")) == [cat, dog]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"motion_prompts_csv": "1\n"},
            {"motion_prompts": ["Line 1: give a motion prompt after sticker 1."]},
        ),
        (
            {"motion_prompts_csv": "sticker,motion\n999999,waves\n"},
            {"motion_prompts": ["Line 2: candidate 999999 does not exist."]},
        ),
        (
            {"motion_prompts": [{"source": 999999, "motion_prompt": "waves"}]},
            {"motion_prompts": ["Item 1: candidate 999999 does not exist."]},
        ),
        (
            {"motion_prompts": [{"source": 2**63, "motion_prompt": "waves"}]},
            # The JSON parser refuses an integer no column holds before the serializer runs.
            {
                "motion_prompts.0.source": [
                    "Must be between -9223372036854775808 and 9223372036854775807."
                ]
            },
        ),
        (
            {"motion_prompts": [{"source": 1, "motion_prompt": ""}]},
            {"motion_prompts": {"0": {"motion_prompt": ["This field may not be blank."]}}},
        ),
        (
            {
                "motion_prompts": [{"source": 1, "motion_prompt": "waves"}],
                "motion_prompts_csv": "1,waves\n",
            },
            {"motion_prompts_csv": ["Give motion prompts as a list or as CSV, not both."]},
        ),
        (
            {"motion_prompts": "waves"},
            {
                "motion_prompts": {
                    "non_field_errors": ['Expected a list of items but got type "str".']
                }
            },
        ),
        ({"sources": []}, {"sources": ["An animation batch needs at least one source sticker."]}),
    ],
)
def test_api_bad_motion_prompts_are_400_and_queue_nothing(
    api, curator, models, stickers, change, expected, django_capture_on_commit_callbacks
):
    payload = _animation_payload(models, **{"sources": [stickers[0].pk], **change})
    with django_capture_on_commit_callbacks() as callbacks:
        response = api(curator).post("/api/batches/create/", payload, format="json")
    assert response.status_code == 400
    assert response.json() == expected
    assert (GenerationBatch.objects.count(), callbacks) == (0, [])


# The page


def _form(models, **change) -> dict:
    return {
        "name": "waves",
        "source_mode": "stickers",
        "stickers": "",
        "motion_prompts": "",
        "motion_prompt": "",
        "model_versions": [str(m.pk) for m in _teachers(models)],
        "seeds": "3",
        "num_frames": "4",
        "num_inference_steps": "2",
        **change,
    }


def test_page_queues_chosen_stickers_with_their_motion_prompts(site, curator, models, stickers):
    cat, dog, _ = stickers
    form = _form(
        models,
        stickers=f"{cat.pk}, {dog.pk}",
        motion_prompts=f"{dog.pk},wags its tail\n",
        motion_prompt="bounces",
    )
    response = site(curator).post("/batches/new/animation/", form)
    batch = GenerationBatch.objects.get()
    assert (response.status_code, response.url) == (302, f"/batches/{batch.pk}/")
    assert (batch.kind, batch.name, batch.total, batch.seeds) == ("animation", "waves", 4, [3])
    assert batch.motion_prompts == {str(dog.pk): "wags its tail"}
    assert (batch.params["motion_prompt"], batch.params["num_frames"]) == ("bounces", 4)
    assert list(batch.sources.order_by("pk")) == [cat, dog]
    assert list(batch.model_versions.order_by("name")) == _teachers(models)


def test_page_reads_a_motion_prompt_file(site, curator, models, stickers):
    cat, _, fox = stickers
    upload = SimpleUploadedFile(
        "motion.csv", f"sticker,motion\n{fox.pk},spins\n{cat.pk},naps\n".encode()
    )
    response = site(curator).post(
        "/batches/new/animation/", {**_form(models), "motion_prompts_file": upload}
    )
    assert response.status_code == 302
    batch = GenerationBatch.objects.get()
    assert batch.motion_prompts == {str(fox.pk): "spins", str(cat.pk): "naps"}
    assert list(batch.sources.order_by("pk")) == [cat, fox]


def test_page_animates_a_dataset_versions_stickers(site, curator, models):
    version = f.dataset_version(models, purpose="alignment", train=2, validation=1)
    stickers = [e.candidate for e in version.entries.order_by("position")]
    response = site(curator).post(
        "/batches/new/animation/",
        _form(
            models,
            source_mode="dataset_version",
            dataset_version=str(version.pk),
            motion_prompts=f"{stickers[1].pk},spins\n",
        ),
    )
    assert response.status_code == 302
    batch = GenerationBatch.objects.get()
    assert sorted(batch.sources.values_list("pk", flat=True)) == sorted(s.pk for s in stickers)
    assert (batch.total, batch.motion_prompts) == (6, {str(stickers[1].pk): "spins"})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"motion_prompts": "999999,waves\n"}, "Line 1: candidate 999999 does not exist."),
        ({"stickers": "1 x"}, "Sticker ids are whole numbers separated by spaces or commas."),
        ({"stickers": "\u00b2"}, "Sticker ids are whole numbers separated by spaces or commas."),
        (
            {"source_mode": "dataset_version", "dataset_version": "\u00b2"},
            "Give a dataset version&#x27;s id.",
        ),
        ({"stickers": "999999"}, "No candidate 999999."),
        (
            {"source_mode": "dataset_version", "dataset_version": "999999"},
            "Dataset version 999999 holds no stickers.",
        ),
        ({"model_versions": []}, "Choose at least one model version."),
        ({"seeds": ""}, "Seeds are whole numbers separated by spaces or commas."),
        ({"num_frames": "many"}, "Must be a whole number."),
        ({"num_frames": "99"}, "Must be between 2 and 32, not 99."),
    ],
)
def test_page_shows_bad_input_and_queues_nothing(
    site, curator, models, stickers, change, message, django_capture_on_commit_callbacks
):
    form = _form(models, **{"stickers": str(stickers[0].pk), **change})
    with django_capture_on_commit_callbacks() as callbacks:
        response = site(curator).post("/batches/new/animation/", form)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert (GenerationBatch.objects.count(), callbacks) == (0, [])


def test_gallery_ticks_bring_stickers_to_the_page(site, curator, models, stickers):
    client = site(curator)
    gallery = client.get("/candidates/?kind=sticker").content.decode()
    assert gallery.count('name="sources"') == 3
    page = client.get(f"/batches/new/animation/?sources={stickers[0].pk}&sources={stickers[2].pk}")
    assert f'name="stickers" value="{stickers[0].pk} {stickers[2].pk}"' in page.content.decode()
