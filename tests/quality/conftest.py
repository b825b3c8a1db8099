import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CROWD_DATA = Path(os.environ.get("STICKERLOOP_CROWD_DATA", ROOT.parent / "shared" / "crowd-data"))


@pytest.fixture(scope="session")
def crowd_data() -> Path:
    """The public crowdsourcing data with published figures (``../shared/crowd-data``)."""
    if not (CROWD_DATA / "README.md").is_file():
        pytest.skip(f"no crowd data at {CROWD_DATA} (set STICKERLOOP_CROWD_DATA)")
    return CROWD_DATA
