"""Prompt enhancers: the template enhancer, and the text-generation enhancer on the tiny random
GPT-2 built offline. Exact texts: both are deterministic."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from generation.pipelines import (
    EnhancerLoadError,
    TemplateEnhancer,
    build_tiny_text_model,
    load_text_generation_enhancer,
)

LM_TEMPLATE = "{prompt}, cute sticker ,"


def _load(uri, **kwargs):
    return load_text_generation_enhancer(
        str(uri), **{"template": LM_TEMPLATE, "max_new_tokens": 6, **kwargs}
    )


@pytest.fixture(scope="module")
def lm(tiny_text_model):
    return _load(tiny_text_model)


# The template enhancer -------------------------------------------------------------------------


def test_template_fills_the_slot_then_adds_the_style_phrases():
    enhancer = TemplateEnhancer("a sticker of {prompt}", ("thick white outline", " flat colours "))

    assert enhancer.enhance(["a red cat", "a blue dog"]) == [
        "a sticker of a red cat, thick white outline, flat colours",
        "a sticker of a blue dog, thick white outline, flat colours",
    ]
    assert enhancer.style_phrases == ("thick white outline", "flat colours")


def test_template_output_is_one_line_and_deterministic():
    enhancer = TemplateEnhancer("{prompt}\n  as a {sticker}, {prompt} again")

    first = enhancer.enhance([" a  red\ncat "])
    assert first == ["a red cat as a {sticker}, a red cat again"]
    assert (
        TemplateEnhancer("{prompt}\n  as a {sticker}, {prompt} again").enhance([" a  red\ncat "])
        == first
    )


def test_template_without_the_slot_is_refused():
    with pytest.raises(ValueError) as error:
        TemplateEnhancer("a sticker of a cat")
    assert str(error.value) == (
        "`template` has to hold the slot {prompt}, where the prompt goes, but is "
        "'a sticker of a cat'."
    )


@pytest.mark.parametrize(
    ("phrases", "message"),
    [
        ("flat colours", "`style_phrases` has to be a list of texts."),
        (["flat", "  "], "`style_phrases` have to be non-empty texts but hold '  '."),
        (
            ["flat\ncolours"],
            "`style_phrases` have to be single lines of at most 200 characters but hold "
            "'flat\\ncolours'.",
        ),
        (["x"] * 17, "`style_phrases` has to have at most 16 phrases but has 17."),
    ],
)
def test_bad_style_phrases_are_refused(phrases, message):
    with pytest.raises(ValueError) as error:
        TemplateEnhancer("{prompt}", phrases)
    assert str(error.value) == message


@pytest.mark.parametrize("prompts", [[], "a cat", [1]])
def test_enhance_wants_a_list_of_prompts(prompts):
    with pytest.raises(ValueError) as error:
        TemplateEnhancer("{prompt}").enhance(prompts)
    assert str(error.value) == "`prompts` has to be a non-empty list of strings."


# The tiny text-generation model -----------------------------------------------------------------


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_tiny_text_model_is_byte_identical_for_a_seed_and_reloads(tiny_text_model, tmp_path):
    again = build_tiny_text_model(tmp_path / "again", seed=0)
    other = build_tiny_text_model(tmp_path / "other", seed=1)

    assert _hashes(again) == _hashes(tiny_text_model)
    assert _hashes(other)["model.safetensors"] != _hashes(again)["model.safetensors"]
    assert sorted(_hashes(again)) == [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert type(AutoModelForCausalLM.from_pretrained(again)).__name__ == "GPT2LMHeadModel"
    tokenizer = AutoTokenizer.from_pretrained(again)
    assert tokenizer.decode(tokenizer("Cute red cat , round")["input_ids"]) == "cute red cat, round"
    assert tokenizer("a zebra")["input_ids"] == [3, 1]  # "a" (after end, unknown and ","), unknown


# The text-generation enhancer ------------------------------------------------------------------


def test_text_generation_writes_the_same_words_every_time(lm, tiny_text_model):
    prompts = ["a blue dog", "a green frog", "a pink owl"]

    assert lm.enhance(prompts) == [
        "star star soft star round car",
        "star style colours star star star",
        "playful star star star",
    ]
    # A fresh load, and each prompt alone: one prompt per call, so nothing else changes it.
    fresh = _load(tiny_text_model)
    assert [fresh.enhance([p])[0] for p in reversed(prompts)] == [
        "playful star star star",
        "star style colours star star star",
        "star star soft star round car",
    ]
    assert (lm.context_tokens, lm.max_new_tokens, lm.device) == (64, 6, "cpu")


def test_a_model_that_writes_nothing_leaves_the_prompt(lm):
    # The tiny model's first word after this one is its end token.
    assert lm.enhance(["a red cat", "A  red\ncat"]) == ["a red cat", "A red cat"]


def test_sampling_asked_for_by_the_folder_is_ignored(tiny_text_model, tmp_path):
    folder = Path(shutil.copytree(tiny_text_model, tmp_path / "sampling"))
    config = json.loads((folder / "generation_config.json").read_text())
    config.update(do_sample=True, temperature=5.0, top_k=0)
    (folder / "generation_config.json").write_text(json.dumps(config))

    assert _load(folder).enhance(["a blue dog"]) == ["star star soft star round car"]


def test_max_new_tokens_bounds_what_is_written(tiny_text_model):
    [two] = _load(tiny_text_model, max_new_tokens=2).enhance(["a blue dog"])

    assert two == "star star"


@pytest.mark.parametrize(
    ("max_new_tokens", "message"),
    [
        (0, "`max_new_tokens` has to be an integer between 1 and 256 but is 0."),
        (True, "`max_new_tokens` has to be an integer between 1 and 256 but is True."),
        (
            64,
            "`max_new_tokens` has to leave room for the prompt in the model's 64-token context "
            "but is 64.",
        ),
    ],
)
def test_bad_max_new_tokens_is_refused(tiny_text_model, max_new_tokens, message):
    with pytest.raises(ValueError) as error:
        _load(tiny_text_model, max_new_tokens=max_new_tokens)
    assert str(error.value) == message


def test_lm_template_without_the_slot_is_refused(tiny_text_model):
    with pytest.raises(ValueError) as error:
        _load(tiny_text_model, template="Describe a sticker:")
    assert str(error.value).startswith("`template` has to hold the slot {prompt}")


def test_missing_and_relative_folders_are_refused(tmp_path):
    with pytest.raises(EnhancerLoadError) as missing:
        _load(tmp_path / "nothing")
    with pytest.raises(EnhancerLoadError) as relative:
        _load("models/tiny-gpt2")

    assert str(missing.value) == f"text-generation model folder {tmp_path / 'nothing'} is missing"
    assert str(relative.value) == (
        "text-generation model models/tiny-gpt2 is not a local folder: give its absolute path"
    )


def test_a_folder_that_does_not_load_is_refused_with_the_loaders_reason(
    tiny_text_model, pipeline_models, tmp_path
):
    diffusers_folder = pipeline_models["sticker-base"]["uri"]
    truncated = Path(shutil.copytree(tiny_text_model, tmp_path / "truncated"))
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])

    with pytest.raises(EnhancerLoadError) as not_an_lm:
        _load(diffusers_folder)
    with pytest.raises(EnhancerLoadError) as cut:
        _load(truncated)

    assert str(not_an_lm.value).startswith(
        f"text-generation model folder {diffusers_folder} does not load: "
    )
    assert "config.json" in str(not_an_lm.value)
    assert str(cut.value).startswith(f"text-generation model folder {truncated} does not load: ")


def test_loads_in_the_dtype_asked_for(tiny_text_model):
    enhancer = _load(tiny_text_model, dtype=torch.bfloat16)

    assert enhancer.model.dtype == torch.bfloat16
    assert isinstance(enhancer.enhance(["a blue dog"])[0], str)
