"""Per-process pipeline cache for generation workers.

A GPU worker runs with concurrency 1, so one cache per process holds the pipelines it has loaded,
keyed by model version, URI, device and dtype: the second chunk of a batch pays no load cost.
Text-generation prompt enhancers share the cache (and its ``PIPELINE_CACHE_SIZE`` bound on the
models a worker keeps in memory).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings

# Through the lazy package (generation.pipelines), not by name: torch and diffusers load with the
# first pipeline, so a worker that only exports, rates or delivers never imports them.
from generation import pipelines
from generation.model_store import model_folder_local
from generation.models import EnhancerKind, ModelVersion, PromptEnhancer
from generation.pipelines.enhancers import Enhancer
from generation.services.enhancers import template_enhancer

if TYPE_CHECKING:
    from generation.pipelines import LoadedPipeline, PipelineCache

_cache: PipelineCache | None = None


def pipeline_cache() -> PipelineCache:
    global _cache
    if _cache is None:
        _cache = pipelines.PipelineCache(max_entries=settings.PIPELINE_CACHE_SIZE)
    return _cache


def pipeline_for(model_version: ModelVersion) -> LoadedPipeline:
    """The loaded pipeline of ``model_version`` (a bucket model is copied here first); raises
    ``ModelLoadError`` naming the folder or URI."""
    device, dtype = pipelines.select_device(settings.GENERATION_DEVICE)
    key = (model_version.pk, model_version.uri, device, str(dtype))
    return pipeline_cache().get(
        key,
        lambda: pipelines.load_pipeline(
            model_folder_local(model_version.uri),
            kind=model_version.kind,
            device=device,
            dtype=dtype,
        ),
    )


def enhancer_for(enhancer: PromptEnhancer) -> Enhancer:
    """What applies ``enhancer``: a template enhancer is built on the spot (microseconds); a
    text-generation model is loaded once per process. Raises ``EnhancerLoadError`` naming the
    folder when it no longer loads."""
    if enhancer.kind == EnhancerKind.TEMPLATE:
        return template_enhancer(enhancer)
    device, dtype = pipelines.select_device(settings.GENERATION_DEVICE)
    key = ("enhancer", enhancer.pk, enhancer.uri, device, str(dtype))
    return pipeline_cache().get(
        key,
        lambda: pipelines.load_text_generation_enhancer(
            enhancer.uri,
            template=enhancer.template,
            max_new_tokens=enhancer.max_new_tokens,
            device=device,
            dtype=dtype,
        ),
    )
