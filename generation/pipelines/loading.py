"""Loading diffusers pipelines once per worker process, and counting prompt tokens.

diffusers and transformers are imported inside the functions that need them: importing
diffusers costs about 5.5 s and transformers about 2.5 s on the 2-core development machine,
and processes that only count tokens or encode images should not pay for what they do not use.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import ModelLoadError

KINDS = ("image", "animation")

# Pipeline classes each kind accepts. generate_stickers calls the pipeline with prompt,
# negative_prompt, size, generators and output_type="np", which every Stable-Diffusion-family
# text-to-image pipeline takes; generate_animations passes `video=` and `strength=`, which
# among the image+text video pipelines only AnimateDiffVideoToVideoPipeline accepts.
IMAGE_PIPELINE_CLASSES = ("StableDiffusionPipeline", "StableDiffusionXLPipeline")
ANIMATION_PIPELINE_CLASSES = ("AnimateDiffVideoToVideoPipeline",)

# Tokenizers saved without `model_max_length` report about 1e30, and pipelines then pad
# prompts to that length and fail; anything above this bound is treated as that mistake.
_MAX_SANE_PROMPT_TOKENS = 100_000


@dataclass
class LoadedPipeline:
    """A pipeline ready to run, with the facts the generation code needs about it.

    Attributes:
        pipe: the diffusers pipeline, already on ``device`` in ``dtype``.
        kind: "image" (text-to-image stickers) or "animation" (sticker + prompt to frames).
        uri: the folder path or hub id it was loaded from, as given.
        device: "cpu" or "cuda".
        dtype: the torch dtype of its weights.
        max_prompt_tokens: the tokenizer's ``model_max_length``, start and end tokens
            included; longer prompts are truncated by the pipeline.
        has_alpha: the VAE decodes 4 channels, the 4th being alpha.
        class_name: the pipeline class, e.g. "StableDiffusionPipeline".
    """

    pipe: Any
    kind: str
    uri: str
    device: str
    dtype: torch.dtype
    max_prompt_tokens: int
    has_alpha: bool
    class_name: str


def _local_path(uri: str) -> Path | None:
    """Return the folder ``uri`` names, or None when it reads as a hub id ("org/name").

    Absolute and explicitly relative paths, ``file://`` URIs and anything that exists on disk
    are folders; a missing folder must be reported as missing rather than looked up on a hub.
    """
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    expanded = os.path.expanduser(uri)
    if os.path.isabs(expanded) or uri.startswith((".", "~")) or os.path.exists(expanded):
        return Path(expanded)
    return None


def _check_folder(uri: str, folder: Path) -> str | None:
    """Return the pipeline class model_index.json names (None if it names none).

    Raises ModelLoadError unless ``folder`` exists and has a parseable model_index.json.
    """
    if not folder.is_dir():
        raise ModelLoadError(f"model folder {uri} is missing")
    index = folder / "model_index.json"
    if not index.is_file():
        raise ModelLoadError(
            f"model folder {uri} is corrupt or not a diffusers pipeline: "
            "model_index.json is missing"
        )
    try:
        index_data = json.loads(index.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(
            f"model folder {uri} is corrupt or not a diffusers pipeline: "
            f"model_index.json is not valid JSON ({exc})"
        ) from exc
    class_name = index_data.get("_class_name") if isinstance(index_data, dict) else None
    return class_name if isinstance(class_name, str) else None


def _check_class(uri: str, kind: str, class_name: str) -> None:
    """Raise ModelLoadError naming ``uri`` unless ``class_name`` fits ``kind``."""
    allowed = IMAGE_PIPELINE_CLASSES if kind == "image" else ANIMATION_PIPELINE_CLASSES
    if class_name not in allowed:
        raise ModelLoadError(
            f"model {uri} holds a {class_name}, which is not an {kind} pipeline "
            f"(expected one of: {', '.join(allowed)})"
        )


def load_pipeline(uri: str, *, kind: str, device: str, dtype: torch.dtype) -> LoadedPipeline:
    """Load the diffusers pipeline at ``uri`` and check that it fits ``kind``.

    ``uri`` is a local folder written by ``save_pretrained`` (a path or ``file://`` URI) or,
    where a hub is reachable, a hub id, which is passed through to ``from_pretrained``
    unchanged. The pipeline is moved to ``device`` and its progress bars are turned off.

    Loading the tiny default models takes about 0.1-0.4 s; real SD weights take seconds, so
    callers keep the result in a PipelineCache rather than loading per task.

    Raises:
        ValueError: ``kind`` is not "image" or "animation".
        ModelLoadError: the folder is missing, corrupt (unreadable model_index.json, missing
            or truncated weights, ...), holds a pipeline class that does not fit ``kind``, or
            has an unusable tokenizer. The message names ``uri``.
    """
    if kind not in KINDS:
        raise ValueError(f"`kind` has to be one of {KINDS} but is {kind!r}.")
    folder = _local_path(uri)
    if folder is not None:
        declared_class = _check_folder(uri, folder)
        if declared_class is not None:
            # Checked before loading, so a wrong model never takes device memory.
            _check_class(uri, kind, declared_class)

    from diffusers import DiffusionPipeline
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    # Workers load models in the background; per-component bars would only flood their logs.
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    source = str(folder) if folder is not None else uri
    try:
        pipe = DiffusionPipeline.from_pretrained(source, dtype=dtype)
    except Exception as exc:
        # Everything from_pretrained raises here (OSError for missing weights, safetensors
        # errors for truncated files, ValueError for unknown classes, ...) means the model
        # itself is unusable; retrying would not help, so it becomes one error type.
        if folder is None:
            raise ModelLoadError(f"model {uri} could not be loaded: {exc}") from exc
        raise ModelLoadError(
            f"model folder {uri} is corrupt or not a diffusers pipeline: {exc}"
        ) from exc

    class_name = type(pipe).__name__
    _check_class(uri, kind, class_name)

    tokenizer = pipe.tokenizer
    max_prompt_tokens = _check_tokenizer(uri, tokenizer)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return LoadedPipeline(
        pipe=pipe,
        kind=kind,
        uri=uri,
        device=device,
        dtype=dtype,
        max_prompt_tokens=max_prompt_tokens,
        has_alpha=pipe.vae.config.out_channels == 4,
        class_name=class_name,
    )


def _check_tokenizer(uri: str, tokenizer: Any) -> int:
    """Return the tokenizer's usable prompt length, or raise ModelLoadError naming ``uri``.

    Offline, transformers can silently produce a 2-token tokenizer instead of failing, and a
    tokenizer saved without ``model_max_length`` makes pipelines pad to about 1e30 tokens;
    both would only surface later as nonsense images or crashes inside a task.
    """
    if tokenizer is None or len(tokenizer) <= 2:
        size = 0 if tokenizer is None else len(tokenizer)
        raise ModelLoadError(f"model {uri} has an unusable tokenizer with {size} tokens")
    limit = int(tokenizer.model_max_length)
    if limit > _MAX_SANE_PROMPT_TOKENS:
        raise ModelLoadError(
            f"model {uri} has a tokenizer without a real model_max_length ({limit})"
        )
    return limit


class PipelineCache:
    """A per-process least-recently-used cache of loaded pipelines.

    Keys are any hashable value; the generation service uses
    ``(model_version_id, uri, device, dtype)``. The lock is held while a missing entry
    loads, so two threads asking for the same model never load it twice (a second copy of a
    real SD pipeline costs about 2 GB of GPU memory); loads of different keys therefore wait
    for each other, which is fine for a worker that runs one task at a time.
    """

    def __init__(self, max_entries: int = 2) -> None:
        if max_entries < 1:
            raise ValueError(f"`max_entries` has to be at least 1 but is {max_entries}.")
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, LoadedPipeline] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, loader: Callable[[], LoadedPipeline]) -> LoadedPipeline:
        """Return the cached pipeline for ``key``, calling ``loader()`` only on a miss.

        A hit marks the entry most recently used. After a load, the least recently used
        entries beyond ``max_entries`` are dropped. A loader that raises leaves the cache
        unchanged and the exception propagates.
        """
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            loaded = loader()
            self._entries[key] = loaded
            evicted = False
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
                evicted = True
        if evicted and torch.cuda.is_available():
            # Return the evicted model's blocks to the driver, so the next load of a
            # different model does not see the memory as taken.
            torch.cuda.empty_cache()
        return loaded

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries


@functools.lru_cache(maxsize=32)
def _load_tokenizer(uri: str) -> Any:
    """Load only the tokenizer of the pipeline or tokenizer folder at ``uri`` (about 0.1 s).

    A folder that itself holds tokenizer_config.json is a tokenizer folder; otherwise the
    tokenizer is read from its "tokenizer" subfolder, as in a saved pipeline. Cached per
    ``uri`` for the life of the process: model folders are immutable once registered.
    """
    from transformers import AutoTokenizer

    folder = _local_path(uri)
    try:
        if folder is None:
            tokenizer = AutoTokenizer.from_pretrained(uri, subfolder="tokenizer")
        elif not folder.is_dir():
            raise ModelLoadError(f"model folder {uri} is missing")
        elif (folder / "tokenizer_config.json").is_file():
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
        elif (folder / "tokenizer").is_dir():
            tokenizer = AutoTokenizer.from_pretrained(str(folder / "tokenizer"))
        else:
            raise ModelLoadError(f"model folder {uri} has no tokenizer")
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"model {uri} has an unreadable tokenizer: {exc}") from exc
    _check_tokenizer(uri, tokenizer)
    return tokenizer


def prompt_token_count(tokenizer_folder_or_pipe_uri: str, prompts: list[str]) -> list[int]:
    """Count the tokens of each prompt as the model's text encoder would see them.

    Counts include the start and end tokens and are taken without truncation, so a count
    above ``model_prompt_token_limit(uri)`` means the pipeline would cut the prompt.

    Raises:
        ModelLoadError: the folder is missing or has no usable tokenizer.
    """
    tokenizer = _load_tokenizer(tokenizer_folder_or_pipe_uri)
    if not prompts:
        return []
    encoded = tokenizer(list(prompts), truncation=False, padding=False, verbose=False)
    return [len(ids) for ids in encoded["input_ids"]]


def model_prompt_token_limit(uri: str) -> int:
    """Return the most tokens (start and end tokens included) the model reads from a prompt."""
    return int(_load_tokenizer(uri).model_max_length)
