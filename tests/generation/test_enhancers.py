"""Prompt enhancers from the platform's side: registration (API and page), the choice per prompt
set and per batch, and generation that keeps the raw and the enhanced prompt on each candidate.
The text-generation enhancer runs the tiny random GPT-2 (``tiny_text_model``)."""

import shutil
from pathlib import Path

import pytest

from generation.models import (
    Candidate,
    ChunkStatus,
    GenerationBatch,
    GenerationChunk,
    PromptEnhancer,
)
from generation.services.batches import generation_batch_create, generation_batch_plan
from generation.services.chunks import generation_chunk_run
from generation.services.enhancers import prompt_enhancer_create, prompt_set_enhancer_set
from generation.services.prompts import prompt_set_import

pytestmark = pytest.mark.django_db

LM_TEMPLATE = "{prompt}, cute sticker ,"
ONLY_ENGINEERS = "Only ML engineers register text-generation enhancers: they load a model folder."
NO_SLOT = (
    "`template` has to hold the slot {prompt}, where the prompt goes, but is 'a sticker of a cat'."
)


def _template(name="sticker-art", template="a sticker of {prompt}", phrases=("flat colours",)):
    return prompt_enhancer_create(
        name=name, kind="template", template=template, style_phrases=list(phrases)
    )


def _lm(uri, name="tiny-lm", max_new_tokens=6):
    return prompt_enhancer_create(
        name=name,
        kind="text_generation",
        template=LM_TEMPLATE,
        uri=str(uri),
        max_new_tokens=max_new_tokens,
    )


def _prompts(*texts, name="p"):
    prompt_set, _ = prompt_set_import(name=name, content="\n".join(texts), file_format="text")
    return prompt_set


def _run(batch):
    generation_batch_plan(batch_id=batch.pk)
    for chunk in GenerationChunk.objects.filter(batch=batch).order_by("index"):
        generation_chunk_run(chunk_id=chunk.pk)
    batch.refresh_from_db()
    return batch


def _batch(models, prompt_set, **kwargs):
    return generation_batch_create(
        kind="sticker",
        prompt_set=prompt_set,
        model_versions=[models["sticker-base"]],
        seeds=[1, 2],
        params={"num_inference_steps": 2},
        **kwargs,
    )


def _prompt_pairs(batch):
    return list(
        Candidate.objects.filter(batch=batch)
        .order_by("prompt__position", "seed")
        .values_list("raw_prompt", "enhanced_prompt", "seed")
    )


# Registration over the API -----------------------------------------------------------------------


def test_a_curator_registers_a_template_enhancer(api, curator):
    response = api(curator).post(
        "/api/prompt-enhancers/create/",
        {
            "name": "sticker-art",
            "kind": "template",
            "template": "a sticker of {prompt}",
            "style_phrases": ["thick white outline", "flat colours"],
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    enhancer = PromptEnhancer.objects.get()
    assert response.json() == {
        "id": enhancer.pk,
        "name": "sticker-art",
        "kind": "template",
        "template": "a sticker of {prompt}",
        "style_phrases": ["thick white outline", "flat colours"],
        "uri": "",
        "max_new_tokens": 64,
        "description": "",
        "created_at": response.json()["created_at"],
    }
    assert enhancer.created_by == curator
    listed = api(curator).get("/api/prompt-enhancers/").json()["results"]
    assert [e["name"] for e in listed] == ["sticker-art"]
    assert api(curator).get(f"/api/prompt-enhancers/{enhancer.pk}/").json()["id"] == enhancer.pk


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"template": "a sticker of a cat"}, {"template": [NO_SLOT]}),
        (
            {"uri": "/models/tiny-lm"},
            {"uri": ["Only a text-generation enhancer reads a model folder."]},
        ),
        (
            {"style_phrases": ["flat\ncolours"]},
            {
                "style_phrases": [
                    "`style_phrases` have to be single lines of at most 200 characters but "
                    "hold 'flat\\ncolours'."
                ]
            },
        ),
        ({"kind": "llm"}, {"kind": ['"llm" is not a valid choice.']}),
    ],
)
def test_a_bad_template_enhancer_is_400_naming_the_field_and_stores_nothing(
    api, curator, body, errors
):
    request = {"name": "bad", "kind": "template", "template": "{prompt}", **body}

    response = api(curator).post("/api/prompt-enhancers/create/", request, format="json")

    assert (response.status_code, response.json()) == (400, errors)
    assert PromptEnhancer.objects.count() == 0


def test_an_enhancer_name_is_unique(api, curator):
    _template()

    response = api(curator).post(
        "/api/prompt-enhancers/create/",
        {"name": "sticker-art", "kind": "template", "template": "{prompt}"},
        format="json",
    )

    assert (response.status_code, response.json()) == (
        400,
        {"name": ["Prompt enhancer with this Name already exists."]},
    )
    assert PromptEnhancer.objects.count() == 1


def test_an_engineer_registers_a_text_generation_enhancer_that_loads(
    api, engineer, tiny_text_model
):
    response = api(engineer).post(
        "/api/prompt-enhancers/create/",
        {
            "name": "tiny-lm",
            "kind": "text_generation",
            "template": LM_TEMPLATE,
            "uri": str(tiny_text_model),
            "max_new_tokens": 6,
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["kind"], body["uri"], body["max_new_tokens"], body["style_phrases"]) == (
        "text_generation",
        str(tiny_text_model),
        6,
        [],
    )


def test_a_curator_may_not_register_a_text_generation_enhancer(api, curator, tiny_text_model):
    response = api(curator).post(
        "/api/prompt-enhancers/create/",
        {
            "name": "tiny-lm",
            "kind": "text_generation",
            "template": LM_TEMPLATE,
            "uri": str(tiny_text_model),
        },
        format="json",
    )

    assert (response.status_code, response.json()) == (
        403,
        {"detail": ONLY_ENGINEERS},
    )
    assert PromptEnhancer.objects.count() == 0


def test_a_folder_that_does_not_load_is_400_with_the_loaders_reason(
    api, engineer, tiny_model_specs, tmp_path
):
    diffusers_folder = tiny_model_specs[0]["uri"]

    def register(uri, **extra):
        return api(engineer).post(
            "/api/prompt-enhancers/create/",
            {"name": "lm", "kind": "text_generation", "template": LM_TEMPLATE, "uri": uri, **extra},
            format="json",
        )

    missing = register(str(tmp_path / "nothing"))
    not_an_lm = register(diffusers_folder)
    no_folder = register("")

    assert (missing.status_code, missing.json()) == (
        400,
        {"uri": [f"text-generation model folder {tmp_path / 'nothing'} is missing"]},
    )
    assert not_an_lm.status_code == 400
    [reason] = not_an_lm.json()["uri"]
    assert reason.startswith(f"text-generation model folder {diffusers_folder} does not load: ")
    assert (no_folder.status_code, no_folder.json()) == (
        400,
        {"uri": ["A text-generation enhancer needs the folder of its model."]},
    )
    assert PromptEnhancer.objects.count() == 0


@pytest.mark.parametrize(
    ("max_new_tokens", "message"),
    [
        (0, "`max_new_tokens` has to be an integer between 1 and 256 but is 0."),
        (
            64,
            "`max_new_tokens` has to leave room for the prompt in the model's 64-token context "
            "but is 64.",
        ),
    ],
)
def test_max_new_tokens_is_checked_against_the_model(
    api, engineer, tiny_text_model, max_new_tokens, message
):
    response = api(engineer).post(
        "/api/prompt-enhancers/create/",
        {
            "name": "lm",
            "kind": "text_generation",
            "template": LM_TEMPLATE,
            "uri": str(tiny_text_model),
            "max_new_tokens": max_new_tokens,
        },
        format="json",
    )

    assert (response.status_code, response.json()) == (400, {"max_new_tokens": [message]})
    assert PromptEnhancer.objects.count() == 0


# Choosing an enhancer ----------------------------------------------------------------------------


def test_a_prompt_set_chooses_the_enhancer_of_its_batches(api, curator, models):
    enhancer = _template()
    prompt_set = _prompts("a cat")
    client = api(curator)

    chosen = client.post(
        f"/api/prompt-sets/{prompt_set.pk}/enhancer/", {"enhancer": enhancer.pk}, format="json"
    )
    unknown = client.post(
        f"/api/prompt-sets/{prompt_set.pk}/enhancer/", {"enhancer": 10**6}, format="json"
    )

    assert chosen.status_code == 200
    assert (chosen.json()["enhancer"], chosen.json()["prompt_count"]) == (enhancer.pk, 1)
    assert (unknown.status_code, unknown.json()) == (
        400,
        {"enhancer": ['Invalid pk "1000000" - object does not exist.']},
    )
    prompt_set.refresh_from_db()
    assert prompt_set.enhancer == enhancer

    def create(**extra):
        response = client.post(
            "/api/batches/create/",
            {
                "kind": "sticker",
                "prompt_set": prompt_set.pk,
                "model_versions": [models["sticker-base"].pk],
                "seeds": [1],
                **extra,
            },
            format="json",
        )
        assert response.status_code == 201, response.json()
        return response.json()["enhancer"]

    other = _template(name="other", template="{prompt}, sticker")
    assert create() == enhancer.pk
    assert create(enhancer=None) is None
    assert create(enhancer=other.pk) == other.pk
    cleared = client.post(
        f"/api/prompt-sets/{prompt_set.pk}/enhancer/", {"enhancer": None}, format="json"
    )
    assert cleared.json()["enhancer"] is None
    assert create() is None
    # A batch keeps the enhancer it was made with.
    assert list(GenerationBatch.objects.order_by("pk").values_list("enhancer", flat=True)) == [
        enhancer.pk,
        None,
        other.pk,
        None,
    ]


def test_an_animation_batch_takes_no_enhancer(api, curator, models):
    source = Candidate.objects.create(
        kind="sticker",
        model_version=models["sticker-base"],
        raw_prompt="a cat",
        file="x.png",
        width=64,
        height=64,
        sha256="0" * 64,
    )

    response = api(curator).post(
        "/api/batches/create/",
        {
            "kind": "animation",
            "sources": [source.pk],
            "model_versions": [models["anim-teacher-a"].pk],
            "seeds": [1],
            "enhancer": _template().pk,
        },
        format="json",
    )

    assert (response.status_code, response.json()) == (
        400,
        {
            "enhancer": [
                "An enhancer rewrites the prompts of a sticker batch; animations have none."
            ]
        },
    )
    assert GenerationBatch.objects.count() == 0


def test_prompts_over_the_token_limit_once_enhanced_are_the_enhancers_400(api, curator, models):
    # The tiny tokenizer is byte-level: a token per character but spaces; start and end besides.
    long = _template(name="long", template="{prompt} " + "x" * 72, phrases=())
    prompt_set = _prompts("a cat", "a cow")

    response = api(curator).post(
        "/api/batches/create/",
        {
            "kind": "sticker",
            "prompt_set": prompt_set.pk,
            "model_versions": [models["sticker-base"].pk],
            "seeds": [1],
            "enhancer": long.pk,
        },
        format="json",
    )

    assert (response.status_code, response.json()) == (
        400,
        {
            "enhancer": [
                "2 prompt(s) exceed the 77-token limit of sticker-base once enhanced by long, "
                f"e.g. prompt {prompt_set.prompts.get(position=0).pk} ('a cat')."
            ]
        },
    )
    assert GenerationBatch.objects.count() == 0


# Generation --------------------------------------------------------------------------------------


def test_candidates_keep_the_raw_and_the_template_enhanced_prompt(models):
    enhancer = _template()
    batch = _run(_batch(models, _prompts("a cat", "a dog"), enhancer=enhancer))

    assert batch.status == "succeeded"
    assert _prompt_pairs(batch) == [
        ("a cat", "a sticker of a cat, flat colours", 1),
        ("a cat", "a sticker of a cat, flat colours", 2),
        ("a dog", "a sticker of a dog, flat colours", 1),
        ("a dog", "a sticker of a dog, flat colours", 2),
    ]


def test_the_model_generates_from_the_enhanced_prompt(models):
    enhanced = _run(_batch(models, _prompts("a cat", "a dog"), enhancer=_template()))
    written = _run(
        _batch(
            models,
            _prompts(
                "a sticker of a cat, flat colours", "a sticker of a dog, flat colours", name="w"
            ),
        )
    )

    def files(batch):
        return list(
            Candidate.objects.filter(batch=batch)
            .order_by("prompt__position", "seed")
            .values_list("sha256", flat=True)
        )

    assert files(enhanced) == files(written)
    assert files(enhanced) != files(_run(_batch(models, _prompts("a cat", "a dog", name="raw"))))


def test_without_an_enhancer_the_imported_enhanced_text_is_kept(models):
    prompt_set, _ = prompt_set_import(
        name="csv", content="text,enhanced_text\na cat,a fluffy cat\na dog,\n", file_format="csv"
    )

    batch = _run(_batch(models, prompt_set))

    assert _prompt_pairs(batch) == [
        ("a cat", "a fluffy cat", 1),
        ("a cat", "a fluffy cat", 2),
        ("a dog", "", 1),
        ("a dog", "", 2),
    ]


def test_candidates_keep_what_the_text_generation_enhancer_wrote(models, tiny_text_model):
    batch = _run(_batch(models, _prompts("a blue dog", "a red cat"), enhancer=_lm(tiny_text_model)))

    assert batch.status == "succeeded"
    # The tiny model writes nothing after "a red cat": its prompt stays as written.
    assert _prompt_pairs(batch) == [
        ("a blue dog", "star star soft star round car", 1),
        ("a blue dog", "star star soft star round car", 2),
        ("a red cat", "a red cat", 1),
        ("a red cat", "a red cat", 2),
    ]


def test_a_text_generation_folder_gone_since_registration_fails_the_chunk(
    models, tiny_text_model, tmp_path
):
    folder = Path(shutil.copytree(tiny_text_model, tmp_path / "lm"))
    enhancer = _lm(folder, name="gone")
    shutil.rmtree(folder)

    batch = _run(_batch(models, _prompts("a blue dog"), enhancer=enhancer))

    assert (batch.status, batch.done_count, batch.failed_count) == ("failed", 0, 2)
    [chunk] = GenerationChunk.objects.filter(batch=batch)
    assert (chunk.status, chunk.error) == (
        ChunkStatus.FAILED,
        f"text-generation model folder {folder} is missing",
    )
    assert Candidate.objects.count() == 0


# Pages -------------------------------------------------------------------------------------------


def test_enhancers_page_lists_with_an_example_and_registers(client, curator):
    _template()
    client.force_login(curator)

    page = client.get("/prompt-enhancers/").content.decode()
    made = client.post(
        "/prompt-enhancers/",
        {
            "name": "outline",
            "kind": "template",
            "template": "{prompt}",
            "style_phrases": "thick white outline\n\nflat colours\n",
        },
    )

    assert "a sticker of a red cat, flat colours" in page
    assert (made.status_code, made["Location"]) == (302, "/prompt-enhancers/")
    assert PromptEnhancer.objects.get(name="outline").style_phrases == [
        "thick white outline",
        "flat colours",
    ]


def test_enhancers_page_shows_refusals_on_their_fields_and_stores_nothing(
    client, curator, engineer, tiny_model_specs
):
    client.force_login(curator)
    no_slot = client.post(
        "/prompt-enhancers/",
        {"name": "bad", "kind": "template", "template": "a sticker of a cat"},
    )
    curator_lm = client.post(
        "/prompt-enhancers/",
        {"name": "bad", "kind": "text_generation", "template": "{prompt}", "uri": "/x"},
    )
    client.force_login(engineer)
    diffusers_folder = tiny_model_specs[0]["uri"]
    broken = client.post(
        "/prompt-enhancers/",
        {"name": "bad", "kind": "text_generation", "template": "{prompt}", "uri": diffusers_folder},
    )

    assert no_slot.status_code == 200
    assert no_slot.context["form"].errors == {"template": [NO_SLOT]}
    assert curator_lm.context["form"].errors == {"kind": [ONLY_ENGINEERS]}
    [reason] = broken.context["form"].errors["uri"]
    assert reason.startswith(f"text-generation model folder {diffusers_folder} does not load: ")
    assert 'data-error="uri"' in broken.content.decode()
    assert PromptEnhancer.objects.count() == 0


def test_prompt_sets_page_sets_a_sets_enhancer(client, curator):
    enhancer = _template()
    prompt_set = _prompts("a cat")
    client.force_login(curator)

    chosen = client.post(f"/prompt-sets/{prompt_set.pk}/enhancer/", {"enhancer": enhancer.pk})
    prompt_set.refresh_from_db()
    assert (chosen.status_code, chosen["Location"]) == (302, "/prompt-sets/")
    assert prompt_set.enhancer == enhancer
    page = client.get("/prompt-sets/").content.decode()
    assert f'<option value="{enhancer.pk}" selected>sticker-art</option>' in page

    client.post(f"/prompt-sets/{prompt_set.pk}/enhancer/", {"enhancer": ""})
    prompt_set.refresh_from_db()
    assert prompt_set.enhancer is None
    assert (
        client.post(f"/prompt-sets/{prompt_set.pk}/enhancer/", {"enhancer": "999999"}).status_code
        == 404
    )


def test_batch_page_chooses_the_enhancer(client, curator, models):
    enhancer = _template()
    prompt_set = _prompts("a cat")
    prompt_set_enhancer_set(prompt_set=prompt_set, enhancer=enhancer)
    client.force_login(curator)

    def create(choice):
        response = client.post(
            "/batches/new/",
            {
                "prompt_set": prompt_set.pk,
                "model_versions": [models["sticker-base"].pk],
                "seeds": "1",
                "enhancer": choice,
            },
        )
        return response

    assert (
        "sticker-art (template with a {prompt} slot)"
        in client.get("/batches/new/").content.decode()
    )
    for choice in ("", "none", str(enhancer.pk)):
        assert create(choice).status_code == 302
    unknown = create("999999")
    assert (
        "<strong>enhancer</strong>: No prompt enhancer &#x27;999999&#x27;."
        in unknown.content.decode()
    )
    assert list(GenerationBatch.objects.order_by("pk").values_list("enhancer", flat=True)) == [
        enhancer.pk,
        None,
        enhancer.pk,
    ]
    detail = client.get(f"/batches/{GenerationBatch.objects.first().pk}/").content.decode()
    assert "sticker-art: <code>a sticker of {prompt}</code> + flat colours" in detail


def test_gallery_shows_the_raw_and_the_enhanced_prompt(client, curator, models):
    batch = _run(_batch(models, _prompts("a cat"), enhancer=_template()))
    client.force_login(curator)

    html = client.get(f"/candidates/?batch={batch.pk}").content.decode()

    assert html.count('title="the prompt as written">a cat</span>') == 2
    assert html.count("enhanced: a sticker of a cat, flat colours</span>") == 2
    api_row = client.get(f"/api/candidates/?batch={batch.pk}").json()["results"][0]
    assert (api_row["raw_prompt"], api_row["enhanced_prompt"]) == (
        "a cat",
        "a sticker of a cat, flat colours",
    )
