"""Per-process pipeline cache for generation workers.

A GPU worker runs with concurrency 1, so one cache per process holds the pipelines it has loaded,
keyed by model version, URI, device and dtype: the second chunk of a batch pays no load cost.
"""

from django.conf import settings

from generation.models import ModelVersion
from generation.pipelines import LoadedPipeline, PipelineCache, load_pipeline, select_device

_cache: PipelineCache | None = None


def pipeline_cache() -> PipelineCache:
    global _cache
    if _cache is None:
        _cache = PipelineCache(max_entries=settings.PIPELINE_CACHE_SIZE)
    return _cache


def pipeline_for(model_version: ModelVersion) -> LoadedPipeline:
    """The loaded pipeline of ``model_version``; raises ``ModelLoadError`` naming the folder."""
    device, dtype = select_device(settings.GENERATION_DEVICE)
    key = (model_version.pk, model_version.uri, device, str(dtype))
    return pipeline_cache().get(
        key,
        lambda: load_pipeline(
            model_version.uri, kind=model_version.kind, device=device, dtype=dtype
        ),
    )
