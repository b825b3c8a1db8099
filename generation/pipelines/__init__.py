"""Django-free model code: loading diffusers pipelines, generating stickers and animations,
enhancing prompts.

Nothing here imports Django; the generation services call these functions and record the
results. Names are resolved lazily (PEP 562) so that a process that only encodes images or
counts tokens does not import torch and diffusers (about 5.5 s on the 2-core machine).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_names

_EXPORTS = {
    "select_device": "device",
    "ModelLoadError": "errors",
    "LoadedPipeline": "loading",
    "load_pipeline": "loading",
    "PipelineCache": "loading",
    "prompt_token_count": "loading",
    "model_prompt_token_limit": "loading",
    "GeneratedSticker": "image",
    "check_sticker_inputs": "image",
    "generate_stickers": "image",
    "GeneratedAnimation": "animation",
    "check_animation_inputs": "animation",
    "generate_animations": "animation",
    "motion_score": "motion",
    "encode_png": "encode",
    "encode_animated_webp": "encode",
    "encode_frame_strip": "encode",
    "decode_animated_webp": "encode",
    "sha256_hex": "encode",
    "matte_background": "matting",
    "build_tiny_sticker_model": "tiny",
    "build_tiny_animation_model": "tiny",
    "build_tiny_models": "tiny",
    "build_tiny_text_model": "tiny_text",
    "EnhancerLoadError": "enhancers",
    "TemplateEnhancer": "enhancers",
    "TextGenerationEnhancer": "enhancers",
    "load_text_generation_enhancer": "enhancers",
}

__all__ = [
    "EnhancerLoadError",
    "GeneratedAnimation",
    "GeneratedSticker",
    "LoadedPipeline",
    "ModelLoadError",
    "PipelineCache",
    "TemplateEnhancer",
    "TextGenerationEnhancer",
    "build_tiny_models",
    "build_tiny_animation_model",
    "build_tiny_sticker_model",
    "build_tiny_text_model",
    "check_animation_inputs",
    "check_sticker_inputs",
    "decode_animated_webp",
    "encode_animated_webp",
    "encode_frame_strip",
    "encode_png",
    "generate_animations",
    "generate_stickers",
    "load_pipeline",
    "load_text_generation_enhancer",
    "matte_background",
    "model_prompt_token_limit",
    "motion_score",
    "prompt_token_count",
    "select_device",
    "sha256_hex",
]

if TYPE_CHECKING:
    from .animation import GeneratedAnimation, check_animation_inputs, generate_animations
    from .device import select_device
    from .encode import (
        decode_animated_webp,
        encode_animated_webp,
        encode_frame_strip,
        encode_png,
        sha256_hex,
    )
    from .enhancers import (
        EnhancerLoadError,
        TemplateEnhancer,
        TextGenerationEnhancer,
        load_text_generation_enhancer,
    )
    from .image import GeneratedSticker, check_sticker_inputs, generate_stickers
    from .loading import (
        LoadedPipeline,
        ModelLoadError,
        PipelineCache,
        load_pipeline,
        model_prompt_token_limit,
        prompt_token_count,
    )
    from .matting import matte_background
    from .motion import motion_score
    from .tiny import build_tiny_animation_model, build_tiny_models, build_tiny_sticker_model
    from .tiny_text import build_tiny_text_model


__getattr__, __dir__ = lazy_names(__name__, _EXPORTS, globals())
