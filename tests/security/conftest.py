import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _local_cache(settings):
    """Login counters in this process's memory, empty for each test (not the shared Redis)."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()
    yield
    cache.clear()
