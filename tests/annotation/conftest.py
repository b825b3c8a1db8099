import pytest

from annotation import selectors
from annotation.services.leases import _last_sweep


@pytest.fixture(autouse=True)
def _annotation_state(settings):
    """Fresh per-process caches, and no throttled lease sweep unless a test asks for one."""
    settings.ANNOTATION_LEASE_SWEEP_SECONDS = 3600
    selectors._configs.clear()
    _last_sweep.clear()
    yield
    selectors._configs.clear()
    _last_sweep.clear()


@pytest.fixture(params=["database", "python"])
def step_mode(request, settings):
    """Run a test with the rating step as the SQL function and as statements from Python."""
    settings.ANNOTATION_RATE_STEP_IN_DATABASE = request.param == "database"
    return request.param
