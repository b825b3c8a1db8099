"""Prompt enhancers: the step between a prompt as written and the text a model generates from.

The Style Tailoring paper expands every user prompt with a language model before generation and
judges alignment against the prompt as written. Two enhancers, each with ``enhance(prompts)``:

- ``TemplateEnhancer``: a template with a ``{prompt}`` slot and optional style phrases, offline
  and deterministic: the same template, phrases and prompt always give the same text.
- ``TextGenerationEnhancer``: a transformers causal language model from a local folder, fed the
  template with the prompt in its slot; the enhanced prompt is the first line it writes. Greedy
  decoding, one prompt per ``generate`` call (no padding), so the same folder, template, prompt,
  ``max_new_tokens``, device and dtype always give the same text, whatever else is enhanced
  alongside.

Nothing here imports Django, and torch and transformers are imported only by the text-generation
enhancer: the web process applies templates when it checks a batch's prompts.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

PROMPT_SLOT = "{prompt}"
MAX_TEMPLATE_CHARS = 1000
MAX_STYLE_PHRASES = 16
MAX_STYLE_PHRASE_CHARS = 200
MIN_NEW_TOKENS = 1
MAX_NEW_TOKENS = 256
# Enhanced prompts a loaded text-generation enhancer remembers (prompts recur across the seeds,
# chunks and model versions of a batch; a real model spends a second or more on each).
MEMO_ENTRIES = 4096

_SPACES = re.compile(r"\s+")


class EnhancerLoadError(Exception):
    """A text-generation model folder is missing or does not load. The message names the folder
    and gives the loader's reason, so it can be shown to whoever registered it."""


class Enhancer(Protocol):
    """What the generation task applies: one enhanced prompt per prompt, in order."""

    def enhance(self, prompts: Sequence[str]) -> list[str]: ...


def check_template(template: object) -> None:
    """Raise ValueError with an exact message unless ``template`` is text of at most 1000
    characters holding the ``{prompt}`` slot, e.g. "`template` has to hold the slot {prompt},
    where the prompt goes, but is 'a sticker'."."""
    if not isinstance(template, str):
        raise ValueError(f"`template` has to be text but is {template!r}.")
    if len(template) > MAX_TEMPLATE_CHARS:
        raise ValueError(
            f"`template` has to have at most {MAX_TEMPLATE_CHARS} characters but has "
            f"{len(template)}."
        )
    if PROMPT_SLOT not in template:
        raise ValueError(
            f"`template` has to hold the slot {PROMPT_SLOT}, where the prompt goes, but is "
            f"{template[:60]!r}."
        )


def check_style_phrases(style_phrases: object) -> tuple[str, ...]:
    """Return the phrases as a tuple, each stripped, or raise ValueError with an exact message:
    at most 16, each non-empty text of at most 200 characters on one line."""
    if isinstance(style_phrases, str) or not isinstance(style_phrases, Sequence):
        raise ValueError("`style_phrases` has to be a list of texts.")
    if len(style_phrases) > MAX_STYLE_PHRASES:
        raise ValueError(
            f"`style_phrases` has to have at most {MAX_STYLE_PHRASES} phrases but has "
            f"{len(style_phrases)}."
        )
    phrases = []
    for phrase in style_phrases:
        if not isinstance(phrase, str) or not phrase.strip():
            raise ValueError(f"`style_phrases` have to be non-empty texts but hold {phrase!r}.")
        if len(phrase) > MAX_STYLE_PHRASE_CHARS or "\n" in phrase:
            raise ValueError(
                f"`style_phrases` have to be single lines of at most {MAX_STYLE_PHRASE_CHARS} "
                f"characters but hold {phrase[:60]!r}."
            )
        phrases.append(phrase.strip())
    return tuple(phrases)


def check_max_new_tokens(max_new_tokens: object) -> None:
    if (
        isinstance(max_new_tokens, bool)
        or not isinstance(max_new_tokens, int)
        or not MIN_NEW_TOKENS <= max_new_tokens <= MAX_NEW_TOKENS
    ):
        raise ValueError(
            f"`max_new_tokens` has to be an integer between {MIN_NEW_TOKENS} and "
            f"{MAX_NEW_TOKENS} but is {max_new_tokens!r}."
        )


def _check_prompts(prompts: object) -> None:
    if (
        isinstance(prompts, str)
        or not isinstance(prompts, Sequence)
        or not prompts
        or not all(isinstance(p, str) for p in prompts)
    ):
        raise ValueError("`prompts` has to be a non-empty list of strings.")


def _one_line(text: str) -> str:
    """Runs of whitespace (newlines included) as one space, trimmed: a prompt is one line."""
    return _SPACES.sub(" ", text).strip()


def fill(template: str, prompt: str) -> str:
    """``template`` with ``prompt`` in every ``{prompt}`` slot, on one line.

    A plain replacement, not ``str.format``: other braces in a template are text, and a template
    cannot reach attributes of its argument.
    """
    return _one_line(template.replace(PROMPT_SLOT, _one_line(prompt)))


@dataclass(frozen=True)
class TemplateEnhancer:
    """``template`` with the prompt in its slot, then the style phrases, comma-separated.

    ``TemplateEnhancer("a sticker of {prompt}", ("thick white outline", "flat colours"))``
    enhances "a red cat" to "a sticker of a red cat, thick white outline, flat colours".
    Costs about a microsecond a prompt: it runs inside the generation task, before the
    pipeline call that uses its output.
    """

    template: str
    style_phrases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_template(self.template)
        object.__setattr__(self, "style_phrases", check_style_phrases(self.style_phrases))

    def enhance(self, prompts: Sequence[str]) -> list[str]:
        """One enhanced prompt per prompt, in order. Raises ValueError unless ``prompts`` is a
        non-empty list of strings."""
        _check_prompts(prompts)
        return [", ".join([fill(self.template, p), *self.style_phrases]) for p in prompts]


@dataclass
class TextGenerationEnhancer:
    """A loaded causal language model that writes enhanced prompts (see
    ``load_text_generation_enhancer``).

    Attributes:
        model: the transformers causal LM, on ``device``, in eval mode.
        tokenizer: its tokenizer.
        template: what the model reads, with the prompt in its ``{prompt}`` slot.
        max_new_tokens: the most tokens it writes per prompt.
        uri: the folder it was loaded from.
        device: "cpu" or "cuda".
        context_tokens: the model's context length; the filled template is cut from the left
            to ``context_tokens - max_new_tokens`` tokens.
    """

    model: Any
    tokenizer: Any
    template: str
    max_new_tokens: int
    uri: str
    device: str
    context_tokens: int
    _memo: OrderedDict[str, str] = field(default_factory=OrderedDict, repr=False)

    def enhance(self, prompts: Sequence[str]) -> list[str]:
        """One enhanced prompt per prompt, in order: the first non-empty line the model writes
        after the filled template, on one line; the prompt itself where the model writes
        nothing. Raises ValueError unless ``prompts`` is a non-empty list of strings."""
        _check_prompts(prompts)
        return [self._enhance_one(p) for p in prompts]

    def _enhance_one(self, prompt: str) -> str:
        key = _one_line(prompt)
        if key in self._memo:
            self._memo.move_to_end(key)
            return self._memo[key]
        import torch

        encoded = self.tokenizer(
            fill(self.template, prompt),
            return_tensors="pt",
            truncation=True,
            max_length=self.context_tokens - self.max_new_tokens,
        )
        input_ids = encoded["input_ids"].to(self.device)
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=encoded["attention_mask"].to(self.device),
                generation_config=self._generation_config(),
            )
        written = self.tokenizer.decode(output[0, input_ids.shape[1] :], skip_special_tokens=True)
        line = next((_one_line(part) for part in written.splitlines() if part.strip()), "")
        enhanced = line or key
        self._memo[key] = enhanced
        if len(self._memo) > MEMO_ENTRIES:
            self._memo.popitem(last=False)
        return enhanced

    def _generation_config(self) -> Any:
        """Greedy decoding, built here rather than read from the folder: a folder's
        ``generation_config.json`` may ask for sampling, which would not be deterministic."""
        from transformers import GenerationConfig

        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id
        return GenerationConfig(
            do_sample=False,
            num_beams=1,
            max_new_tokens=self.max_new_tokens,
            eos_token_id=eos,
            pad_token_id=pad if pad is not None else eos,
        )


def _context_tokens(model: Any, tokenizer: Any) -> int:
    """The model's context length: its position embeddings, or the tokenizer's limit where that
    is smaller (a tokenizer saved without one reports about 1e30)."""
    config = model.config
    positions = getattr(config, "max_position_embeddings", None) or getattr(
        config, "n_positions", None
    )
    limits = [int(n) for n in (positions, tokenizer.model_max_length) if n and n < 10**9]
    return min(limits) if limits else 2048


def load_text_generation_enhancer(
    uri: str,
    *,
    template: str,
    max_new_tokens: int,
    device: str = "cpu",
    dtype: Any = None,
) -> TextGenerationEnhancer:
    """Load the causal language model and tokenizer saved in the folder ``uri``.

    ``uri`` is an absolute path (or ``file://`` URI) of a folder written by
    ``save_pretrained``, holding the model and its tokenizer. The tiny test model loads in about
    0.05 s; real models take seconds, so callers keep the result (``generation.runtime``).

    Raises:
        ValueError: ``template`` lacks ``{prompt}``, or ``max_new_tokens`` is outside [1, 256]
            or leaves no room for the prompt in the model's context.
        EnhancerLoadError: the folder is missing or does not load as a text-generation model
            with a tokenizer; the message names the folder and the loader's reason.
    """
    check_template(template)
    check_max_new_tokens(max_new_tokens)
    folder = Path(uri.removeprefix("file://"))
    if not folder.is_absolute():
        raise EnhancerLoadError(
            f"text-generation model {uri} is not a local folder: give its absolute path"
        )
    if not folder.is_dir():
        raise EnhancerLoadError(f"text-generation model folder {uri} is missing")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype or torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except Exception as exc:
        # Whatever from_pretrained raises (OSError for a missing config or weights, ValueError
        # for a model that is not a causal LM, safetensors errors for truncated files) means
        # the folder is unusable as it is; the reason goes to whoever registered it.
        raise EnhancerLoadError(f"text-generation model folder {uri} does not load: {exc}") from exc
    context = _context_tokens(model, tokenizer)
    if max_new_tokens >= context:
        raise ValueError(
            f"`max_new_tokens` has to leave room for the prompt in the model's {context}-token "
            f"context but is {max_new_tokens}."
        )
    # Left: a long prompt loses the start of the filled template, and the model still reads the
    # end it continues from.
    tokenizer.truncation_side = "left"
    model.to(device)
    model.eval()
    return TextGenerationEnhancer(
        model=model,
        tokenizer=tokenizer,
        template=template,
        max_new_tokens=max_new_tokens,
        uri=uri,
        device=device,
        context_tokens=context,
    )
