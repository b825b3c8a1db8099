"""Tiny, randomly initialised sticker and animation models, built offline from configuration.

They have the real architectures (Stable Diffusion text-to-image, AnimateDiff
video-to-video) at a size the 2-core CPU runs in a fraction of a second, so the whole data
engine (generation, rating, training, promotion) can run and be tested without weights from
a model hub. Weights depend only on the seed: the same seed gives byte-identical folders.

Measured on the 2-core development machine: building the four default models takes about
3 s, reloading one with DiffusionPipeline.from_pretrained about 0.1-0.15 s.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

IMAGE_DEFAULT_PARAMS: dict[str, Any] = {
    "num_inference_steps": 8,
    "guidance_scale": 5.0,
    "width": 64,
    "height": 64,
}
ANIMATION_DEFAULT_PARAMS: dict[str, Any] = {
    "num_inference_steps": 6,
    "guidance_scale": 5.0,
    "width": 64,
    "height": 64,
    "num_frames": 8,
}

# About 1.4 M parameters; block widths of 32 and 64 are the smallest GroupNorm(32) allows.
UNET_CONFIG: dict[str, Any] = {
    "block_out_channels": (32, 64),
    "layers_per_block": 2,
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "cross_attention_dim": 32,
}
# Four levels, so 64x64 pixels map to an 8x8 latent: SD's downsampling factor of 8.
# force_upcast=False: the upcast exists for SDXL's VAE overflowing in float16; left on, the
# video pipeline re-casts the VAE on every call and logs a warning each time.
VAE_CONFIG: dict[str, Any] = {
    "block_out_channels": (32, 32, 64, 64),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "latent_channels": 4,
    "sample_size": 64,
    "force_upcast": False,
}
TEXT_ENCODER_CONFIG: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "max_position_embeddings": 77,
    "layer_norm_eps": 1e-5,
}
# Stable Diffusion's noise schedule.
SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}
PROMPT_TOKENS = 77
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"


def _byte_symbols() -> list[str]:
    """One printable character per byte value, in byte order (GPT-2/CLIP byte-level BPE).

    Printable Latin-1 bytes stand for themselves; the others (controls, space, ...) are
    mapped in order onto code points from 256 upwards, so no symbol is whitespace.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    symbols = []
    shifted = 0
    for byte in range(256):
        if byte in printable:
            symbols.append(chr(byte))
        else:
            symbols.append(chr(256 + shifted))
            shifted += 1
    return symbols


def build_tokenizer() -> Any:
    """Return a byte-level CLIPTokenizer built in memory: 514 tokens, no merges, 77 tokens max.

    The vocabulary is the 256 byte symbols, the same with the end-of-word suffix "</w>", and
    the start and end tokens; every string tokenizes (one token per byte) without a
    vocabulary file, which no hub can provide here.
    """
    from transformers import CLIPTokenizer

    symbols = _byte_symbols()
    vocab = {symbol: index for index, symbol in enumerate(symbols)}
    vocab.update({f"{symbol}</w>": 256 + index for index, symbol in enumerate(symbols)})
    vocab[BOS_TOKEN] = 512
    vocab[EOS_TOKEN] = 513
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=PROMPT_TOKENS)
    # A tokenizer that lost its vocabulary has only its 2 special tokens; catching that here
    # keeps a broken model from ever being saved.
    assert len(tokenizer) > 2, f"byte-level tokenizer has only {len(tokenizer)} tokens"
    return tokenizer


UNK_TOKEN = "[UNK]"


def build_word_tokenizer(words: list[str], *, max_length: int) -> Any:
    """Return a word-level tokenizer over ``words``: one token per word, lower-cased.

    For models trained from scratch on a closed vocabulary (the sticker world's captions), a
    word per token leaves the small text encoder nothing to assemble from characters. Words
    and punctuation are split as ``tokenizers``' Whitespace pre-tokenizer splits them (``\\w+``
    or ``[^\\w\\s]+``); anything else reads as the unknown token. Ids: start, end, unknown,
    then ``words`` in the given order. Padding uses the end token, as CLIP's tokenizer does.
    """
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {BOS_TOKEN: 0, EOS_TOKEN: 1, UNK_TOKEN: 2}
    for word in words:
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(WordLevel(vocab, unk_token=UNK_TOKEN))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A {EOS_TOKEN}",
        special_tokens=[(BOS_TOKEN, 0), (EOS_TOKEN, 1)],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        pad_token=EOS_TOKEN,
        model_max_length=max_length,
    )
    assert len(tokenizer) == len(vocab), f"word tokenizer has {len(tokenizer)} tokens"
    return tokenizer


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU generator inside the block without disturbing the caller's RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextmanager
def _diffusers_errors_only() -> Iterator[None]:
    """Silence diffusers' warnings inside the block, restoring the previous level.

    Merging the UNet with a motion adapter casts it to its own dtype and diffusers then
    warns "There are modules in UNetMotionModel that should be kept in float32: []" (an
    empty list: nothing is affected), once per animation model built.
    """
    from diffusers.utils import logging as diffusers_logging

    previous = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(previous)


def _image_components(seed: int) -> dict[str, Any]:
    """Build the Stable Diffusion components with an RGBA VAE, each seeded on its own.

    Each module is seeded separately so that changing one module's config leaves the
    others' weights unchanged.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = build_tokenizer()
    with _seeded(seed):
        unet = UNet2DConditionModel(**UNET_CONFIG)
    with _seeded(seed):
        vae = AutoencoderKL(in_channels=4, out_channels=4, **VAE_CONFIG)
    with _seeded(seed):
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                bos_token_id=tokenizer.convert_tokens_to_ids(BOS_TOKEN),
                eos_token_id=tokenizer.convert_tokens_to_ids(EOS_TOKEN),
                pad_token_id=tokenizer.convert_tokens_to_ids(EOS_TOKEN),
                **TEXT_ENCODER_CONFIG,
            )
        )
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "scheduler": DDIMScheduler(**SCHEDULER_CONFIG),
    }


def rgb_vae_from_rgba(vae: Any) -> Any:
    """Return a 3-channel copy of a 4-channel (RGBA) AutoencoderKL sharing its latent space.

    Why animation models need it: AnimateDiffVideoToVideoPipeline preprocesses the input
    video to 3 channels, which a 4-channel encoder rejects ("expected input ... to have 4
    channels, but got 3"), and the input must be RGB anyway (an opaque composite).

    The decoder keeps the RGB output rows of its last convolution, so it decodes the RGB the
    RGBA decoder would (equal up to float rounding, about 1e-5 on [-1, 1]). The encoder's
    alpha input is folded into its bias as a constant alpha of 1 (opaque, +1 after the
    [-1, 1] normalisation). That matches the RGBA encoder on opaque images except where its
    zero padding sees alpha 0 at the image border; four downsampling levels spread that over
    the whole 8x8 latent of a 64x64 image (measured: mean difference 0.03 against a latent
    standard deviation of 0.33).
    """
    from diffusers import AutoencoderKL

    config = dict(vae.config)
    config.update(in_channels=3, out_channels=3)
    rgb_vae = AutoencoderKL.from_config(config)
    state = {name: tensor.clone() for name, tensor in vae.state_dict().items()}
    conv_in_weight = state["encoder.conv_in.weight"]
    state["encoder.conv_in.bias"] += conv_in_weight[:, 3].sum(dim=(1, 2))
    state["encoder.conv_in.weight"] = conv_in_weight[:, :3].contiguous()
    state["decoder.conv_out.weight"] = state["decoder.conv_out.weight"][:3].contiguous()
    state["decoder.conv_out.bias"] = state["decoder.conv_out.bias"][:3].contiguous()
    rgb_vae.load_state_dict(state)
    return rgb_vae


def save_atomically(pipe: Any, path: Path) -> Path:
    """Save ``pipe`` to ``path`` through a temporary sibling folder renamed into place.

    A build that dies midway leaves no half-written folder at ``path`` that could pass for
    a model. An existing folder at ``path`` is replaced; if another process renames its own
    build into place first, that build is kept and this one discarded.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    # mkdtemp creates the folder private (0700); the web and worker processes may run as
    # other users and must be able to read the model.
    staging.chmod(0o755)
    try:
        pipe.save_pretrained(staging, safe_serialization=True)
        if path.exists():
            shutil.rmtree(path)
        try:
            os.rename(staging, path)
        except OSError:
            if not path.is_dir():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return path


def build_tiny_sticker_model(path: str | Path, *, seed: int = 0) -> Path:
    """Build a tiny RGBA StableDiffusionPipeline from ``seed`` and save it at ``path``.

    UNet2DConditionModel (32/64 channels, cross-attention dim 32, 8x8 latents), a 4-level
    AutoencoderKL with 4 input and output channels (64x64 RGBA pixels), a 2-layer
    CLIPTextModel of width 32, the byte-level tokenizer, SD's DDIM schedule and no safety
    checker. Saved as safetensors (about 10 MB); DiffusionPipeline.from_pretrained(path)
    reloads it as StableDiffusionPipeline. Replaces whatever is at ``path``.
    """
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        **_image_components(seed),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    return save_atomically(pipe, Path(path))


def build_tiny_animation_model(
    path: str | Path,
    *,
    seed: int = 0,
    base_path: str | Path | None = None,
    vae_path: str | Path | None = None,
    motion_num_attention_heads: int = 4,
    motion_transformer_layers: int = 1,
    use_motion_mid_block: bool = True,
    motion_norm_num_groups: int = 32,
) -> Path:
    """Build a tiny AnimateDiffVideoToVideoPipeline and save it at ``path``.

    The image part comes from the sticker model at ``base_path`` (as AnimateDiff reuses a
    text-to-image model), or, without one, from the sticker components ``seed`` would build.
    Its RGBA VAE is replaced by the 3-channel AutoencoderKL at ``vae_path`` when given (one
    trained for the base's latent space, ``pretrain.train_composite_vae``), else by
    rgb_vae_from_rgba's fold; the video pipeline needs 3 channels. A MotionAdapter seeded
    with ``seed`` matches the tiny UNet (two motion layers per block, as the UNet has two
    resnets per block); the keyword arguments vary its size. Saved folder: the UNet merged
    with the motion modules (UNetMotionModel), the motion_adapter, vae, text_encoder,
    tokenizer and scheduler; about 15 MB.
    DiffusionPipeline.from_pretrained(path) reloads it as AnimateDiffVideoToVideoPipeline.
    Replaces whatever is at ``path``.
    """
    from diffusers import AnimateDiffVideoToVideoPipeline, MotionAdapter, StableDiffusionPipeline

    if base_path is None:
        components = _image_components(seed)
    else:
        base = StableDiffusionPipeline.from_pretrained(str(base_path), dtype=torch.float32)
        components = {
            name: getattr(base, name)
            for name in ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
        }
    if vae_path is not None:
        from diffusers import AutoencoderKL

        components["vae"] = AutoencoderKL.from_pretrained(str(vae_path), dtype=torch.float32)
    elif components["vae"].config.out_channels == 4:
        components["vae"] = rgb_vae_from_rgba(components["vae"])
    with _seeded(seed):
        motion_adapter = MotionAdapter(
            block_out_channels=UNET_CONFIG["block_out_channels"],
            motion_layers_per_block=UNET_CONFIG["layers_per_block"],
            motion_transformer_layers_per_block=motion_transformer_layers,
            motion_num_attention_heads=motion_num_attention_heads,
            motion_norm_num_groups=motion_norm_num_groups,
            motion_max_seq_length=32,
            use_motion_mid_block=use_motion_mid_block,
        )
    with _diffusers_errors_only():
        pipe = AnimateDiffVideoToVideoPipeline(motion_adapter=motion_adapter, **components)
    return save_atomically(pipe, Path(path))


def _loads_as(path: Path, class_name: str) -> bool:
    """Whether ``path`` reloads through DiffusionPipeline as ``class_name`` (about 0.15 s)."""
    from diffusers import DiffusionPipeline

    if not (path / "model_index.json").is_file():
        return False
    try:
        pipe = DiffusionPipeline.from_pretrained(str(path), dtype=torch.float32)
    except Exception:
        # Any failure means the folder is not a usable model and gets rebuilt.
        return False
    return type(pipe).__name__ == class_name


_DESCRIPTIONS = {
    "sticker-base": "Tiny RGBA text-to-sticker model (Stable Diffusion shape), built offline.",
    "anim-teacher-a": "Tiny AnimateDiff video-to-video teacher, seed 1, 4-head motion modules.",
    "anim-teacher-b": (
        "Tiny AnimateDiff video-to-video teacher, seed 2, 8-head 2-layer motion modules."
    ),
    "anim-student": "Tiny AnimateDiff video-to-video student, seed 3, smallest motion modules.",
}

# name, kind, role, seed, motion adapter options (None for the image model).
_DEFAULT_MODELS: tuple[tuple[str, str, str, int, dict[str, Any] | None], ...] = (
    ("sticker-base", "image", "base", 0, None),
    # Teachers differ in seed and motion module size, so they animate differently.
    (
        "anim-teacher-a",
        "animation",
        "teacher",
        1,
        {
            "motion_num_attention_heads": 4,
            "motion_transformer_layers": 1,
            "use_motion_mid_block": True,
        },
    ),
    (
        "anim-teacher-b",
        "animation",
        "teacher",
        2,
        {
            "motion_num_attention_heads": 8,
            "motion_transformer_layers": 2,
            "use_motion_mid_block": True,
        },
    ),
    # The student has the smallest motion modules (no mid block): 0.57 M adapter parameters
    # against 0.66 M and 1.18 M for the teachers.
    (
        "anim-student",
        "animation",
        "student",
        3,
        {
            "motion_num_attention_heads": 2,
            "motion_transformer_layers": 1,
            "use_motion_mid_block": False,
        },
    ),
)


def build_tiny_models(root: str | Path) -> list[dict[str, Any]]:
    """Build the default models under ``root`` and describe them.

    Folders: ``sticker-base`` (image, base), ``anim-teacher-a`` and ``anim-teacher-b``
    (animation, teacher) and ``anim-student`` (animation, student). The animation models
    share sticker-base's UNet, text encoder and latent space, so they animate its stickers.
    A folder that already exists and reloads as the right class is kept (a re-run takes
    about 0.5 s); a missing or broken one is rebuilt.

    Returns one dict per model: ``name``, ``kind`` ("image" | "animation"), ``role``
    ("base" | "teacher" | "student"), ``uri`` (absolute folder path), ``default_params``
    (num_inference_steps, guidance_scale, width, height, plus num_frames for animation) and
    a one-line ``description``.
    """
    root = Path(root).absolute()
    base_path = root / "sticker-base"
    models = []
    for name, kind, role, seed, motion in _DEFAULT_MODELS:
        path = root / name
        if kind == "image":
            if not _loads_as(path, "StableDiffusionPipeline"):
                build_tiny_sticker_model(path, seed=seed)
            params = dict(IMAGE_DEFAULT_PARAMS)
        else:
            if not _loads_as(path, "AnimateDiffVideoToVideoPipeline"):
                build_tiny_animation_model(path, seed=seed, base_path=base_path, **(motion or {}))
            params = dict(ANIMATION_DEFAULT_PARAMS)
        models.append(
            {
                "name": name,
                "kind": kind,
                "role": role,
                "uri": str(path),
                "default_params": params,
                "description": _DESCRIPTIONS[name],
            }
        )
    return models
