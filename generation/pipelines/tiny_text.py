"""A tiny, randomly initialised text-generation model, built offline from configuration.

The text-generation prompt enhancer is tested with it, as the generation code is with the tiny
diffusers models (``tiny.py``): a GPT-2 causal language model of two layers and width 32 over a
word-level vocabulary of sticker-style words, so that what it writes reads as words. Its weights
depend only on the seed: the same seed gives byte-identical folders. Building takes about 0.1 s
once transformers is imported; the folder is about 50 KB.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .tiny import save_atomically

EOS_TOKEN = "<|endoftext|>"
UNK_TOKEN = "[UNK]"
# The words it can write; a word of a prompt outside them reads as the unknown token.
WORDS = (
    ",",
    "a",
    "of",
    "with",
    "and",
    "red",
    "blue",
    "green",
    "yellow",
    "pink",
    "purple",
    "orange",
    "brown",
    "cat",
    "dog",
    "fox",
    "frog",
    "owl",
    "bear",
    "cup",
    "car",
    "star",
    "heart",
    "sticker",
    "cute",
    "kawaii",
    "cartoon",
    "chibi",
    "emoji",
    "vector",
    "art",
    "style",
    "illustration",
    "character",
    "flat",
    "colours",
    "bold",
    "thick",
    "white",
    "outline",
    "clean",
    "lines",
    "transparent",
    "background",
    "centred",
    "whole",
    "simple",
    "shapes",
    "vibrant",
    "pastel",
    "glossy",
    "soft",
    "shading",
    "smiling",
    "happy",
    "playful",
    "expressive",
    "big",
    "eyes",
    "round",
    "tiny",
    "adorable",
)
CONTEXT_TOKENS = 64
# GPT-2's own initialiser (standard deviation 0.02) makes a random model repeat one word;
# wider weights make it write varied words, which the tests can tell apart.
GPT2_CONFIG: dict[str, Any] = {
    "n_positions": CONTEXT_TOKENS,
    "n_embd": 32,
    "n_layer": 2,
    "n_head": 2,
    "initializer_range": 0.5,
}


def build_text_tokenizer(words: tuple[str, ...] = WORDS) -> Any:
    """A word-level tokenizer over ``words``, lower-cased, split as ``tokenizers``' Whitespace
    pre-tokenizer splits (``\\w+`` or ``[^\\w\\s]+``), decoded with spaces between words and
    none before punctuation. Ids: end, unknown, then ``words`` in order; the end token also
    pads. No start token is added, as GPT-2 adds none."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {EOS_TOKEN: 0, UNK_TOKEN: 1}
    for word in words:
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(WordLevel(vocab, unk_token=UNK_TOKEN))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        pad_token=EOS_TOKEN,
        model_max_length=CONTEXT_TOKENS,
    )


@dataclass
class _ModelFolder:
    """A model and its tokenizer saved side by side, as ``save_atomically`` saves one object."""

    model: Any
    tokenizer: Any

    def save_pretrained(self, path: Path, **kwargs: Any) -> None:
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)


def build_tiny_text_model(path: str | Path, *, seed: int = 0) -> Path:
    """Build a tiny random GPT-2 language model with the word-level tokenizer at ``path``.

    ``AutoModelForCausalLM.from_pretrained(path)`` reloads it as ``GPT2LMHeadModel`` and
    ``AutoTokenizer.from_pretrained(path)`` its tokenizer (64-token context). Replaces whatever
    is at ``path``; a build that dies midway leaves nothing there.
    """
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    tokenizer = build_text_tokenizer()
    eos = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
        **GPT2_CONFIG,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    return save_atomically(_ModelFolder(model, tokenizer), Path(path))
