import json
import shutil
import threading
import time
from pathlib import Path

import pytest
import torch

from generation.pipelines import (
    LoadedPipeline,
    ModelLoadError,
    PipelineCache,
    load_pipeline,
    model_prompt_token_limit,
    prompt_token_count,
)


def _load(uri: str, kind: str) -> LoadedPipeline:
    return load_pipeline(uri, kind=kind, device="cpu", dtype=torch.float32)


def _fake(name: str) -> LoadedPipeline:
    return LoadedPipeline(
        pipe=object(),
        kind="image",
        uri=name,
        device="cpu",
        dtype=torch.float32,
        max_prompt_tokens=77,
        has_alpha=True,
        class_name="StableDiffusionPipeline",
    )


@pytest.fixture
def copied_sticker_model(pipeline_models, tmp_path) -> Path:
    """A private copy of sticker-base that a test may break."""
    return Path(shutil.copytree(pipeline_models["sticker-base"]["uri"], tmp_path / "copy"))


def test_loads_sticker_model(sticker_pipeline, pipeline_models):
    uri = pipeline_models["sticker-base"]["uri"]

    assert sticker_pipeline.uri == uri
    assert sticker_pipeline.kind == "image"
    assert sticker_pipeline.class_name == "StableDiffusionPipeline"
    assert (sticker_pipeline.device, sticker_pipeline.dtype) == ("cpu", torch.float32)
    assert sticker_pipeline.max_prompt_tokens == 77
    assert sticker_pipeline.has_alpha is True
    assert sticker_pipeline.pipe.unet.dtype == torch.float32


def test_loads_animation_model(teacher_pipeline):
    assert teacher_pipeline.kind == "animation"
    assert teacher_pipeline.class_name == "AnimateDiffVideoToVideoPipeline"
    assert teacher_pipeline.has_alpha is False
    assert type(teacher_pipeline.pipe.unet).__name__ == "UNetMotionModel"
    assert teacher_pipeline.max_prompt_tokens == 77


def test_wrong_kind_is_a_load_error_naming_the_model(pipeline_models):
    uri = pipeline_models["sticker-base"]["uri"]

    with pytest.raises(ModelLoadError) as excinfo:
        _load(uri, "animation")

    assert str(excinfo.value) == (
        f"model {uri} holds a StableDiffusionPipeline, which is not an animation pipeline "
        "(expected one of: AnimateDiffVideoToVideoPipeline)"
    )


def test_unknown_kind_is_a_value_error(pipeline_models):
    with pytest.raises(ValueError) as excinfo:
        _load(pipeline_models["sticker-base"]["uri"], "audio")

    assert str(excinfo.value) == "`kind` has to be one of ('image', 'animation') but is 'audio'."


def test_missing_folder(tmp_path):
    uri = str(tmp_path / "nowhere")

    with pytest.raises(ModelLoadError) as excinfo:
        _load(uri, "image")

    assert str(excinfo.value) == f"model folder {uri} is missing"


def test_folder_without_model_index(tmp_path):
    (tmp_path / "empty").mkdir()
    uri = str(tmp_path / "empty")

    with pytest.raises(ModelLoadError) as excinfo:
        _load(uri, "image")

    assert str(excinfo.value) == (
        f"model folder {uri} is corrupt or not a diffusers pipeline: model_index.json is missing"
    )


def test_truncated_model_index(copied_sticker_model):
    index = copied_sticker_model / "model_index.json"
    index.write_bytes(index.read_bytes()[:40])

    with pytest.raises(ModelLoadError) as excinfo:
        _load(str(copied_sticker_model), "image")

    assert str(excinfo.value).startswith(
        f"model folder {copied_sticker_model} is corrupt or not a diffusers pipeline: "
        "model_index.json is not valid JSON ("
    )


def test_deleted_unet_weights(copied_sticker_model):
    (copied_sticker_model / "unet" / "diffusion_pytorch_model.safetensors").unlink()

    with pytest.raises(ModelLoadError) as excinfo:
        _load(str(copied_sticker_model), "image")

    message = str(excinfo.value)
    assert message.startswith(
        f"model folder {copied_sticker_model} is corrupt or not a diffusers pipeline: "
    )
    assert f"{copied_sticker_model}/unet" in message


def test_truncated_unet_weights(copied_sticker_model):
    weights = copied_sticker_model / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])

    with pytest.raises(ModelLoadError) as excinfo:
        _load(str(copied_sticker_model), "image")

    assert str(excinfo.value).startswith(
        f"model folder {copied_sticker_model} is corrupt or not a diffusers pipeline: "
    )


def test_unknown_pipeline_class(copied_sticker_model):
    index = copied_sticker_model / "model_index.json"
    index.write_text(json.dumps({**json.loads(index.read_text()), "_class_name": "NoSuchPipeline"}))

    with pytest.raises(ModelLoadError) as excinfo:
        _load(str(copied_sticker_model), "image")

    assert str(excinfo.value) == (
        f"model {copied_sticker_model} holds a NoSuchPipeline, which is not an image pipeline "
        "(expected one of: StableDiffusionPipeline, StableDiffusionXLPipeline)"
    )


def test_cache_loads_once_and_returns_the_same_object():
    cache = PipelineCache(max_entries=2)
    calls = []

    def loader():
        calls.append(1)
        return _fake("a")

    first = cache.get(("mv", 1), loader)
    second = cache.get(("mv", 1), loader)

    assert first is second
    assert len(calls) == 1


def test_cache_evicts_the_least_recently_used_entry():
    cache = PipelineCache(max_entries=2)
    a = cache.get("a", lambda: _fake("a"))
    cache.get("b", lambda: _fake("b"))
    assert cache.get("a", lambda: _fake("a-again")) is a  # "a" is now the most recent

    cache.get("c", lambda: _fake("c"))

    assert ("a" in cache, "b" in cache, "c" in cache) == (True, False, True)
    assert len(cache) == 2


def test_cache_does_not_keep_failed_loads():
    cache = PipelineCache(max_entries=1)

    def broken():
        raise ModelLoadError("model folder /x is missing")

    with pytest.raises(ModelLoadError):
        cache.get("x", broken)

    assert len(cache) == 0
    assert cache.get("x", lambda: _fake("x")).uri == "x"


def test_cache_clear_and_bad_size():
    cache = PipelineCache(max_entries=3)
    cache.get("a", lambda: _fake("a"))

    cache.clear()

    assert len(cache) == 0
    with pytest.raises(ValueError) as excinfo:
        PipelineCache(max_entries=0)
    assert str(excinfo.value) == "`max_entries` has to be at least 1 but is 0."


def test_cache_loads_once_under_concurrent_gets():
    cache = PipelineCache(max_entries=2)
    calls = []

    def slow_loader():
        calls.append(1)
        time.sleep(0.05)
        return _fake("slow")

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get("k", slow_loader)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(calls) == 1
    assert len(results) == 8
    assert all(result is results[0] for result in results)


def test_prompt_token_count_counts_start_and_end_tokens_without_truncation(pipeline_models):
    uri = pipeline_models["sticker-base"]["uri"]
    # the byte-level tokenizer has no merges: one token per byte of each word
    prompts = ["a cat", "", "hello world", "x" * 100]

    assert prompt_token_count(uri, prompts) == [6, 2, 12, 102]
    assert prompt_token_count(uri + "/tokenizer", prompts) == [6, 2, 12, 102]
    assert prompt_token_count(uri, []) == []


def test_model_prompt_token_limit(pipeline_models):
    assert model_prompt_token_limit(pipeline_models["anim-student"]["uri"]) == 77


def test_prompt_token_count_on_missing_folder(tmp_path):
    uri = str(tmp_path / "gone")

    with pytest.raises(ModelLoadError) as excinfo:
        prompt_token_count(uri, ["a cat"])

    assert str(excinfo.value) == f"model folder {uri} is missing"


def test_prompt_token_count_on_folder_without_tokenizer(tmp_path):
    uri = str(tmp_path)

    with pytest.raises(ModelLoadError) as excinfo:
        model_prompt_token_limit(uri)

    assert str(excinfo.value) == f"model folder {uri} has no tokenizer"
