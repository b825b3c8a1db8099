"""Fixtures for the Django-free pipeline tests: the tiny default models, built once.

These tests need no database. The models are the session's (built once, about 4.5 s on the
2-core machine, shared with the rest of the suite) and the pipelines loaded once, as a worker
would.
"""

from pathlib import Path

import pytest
import torch

from generation.pipelines import LoadedPipeline, load_pipeline


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(one_torch_thread):
    """Every pipeline test on one torch thread (see ``one_torch_thread``)."""


@pytest.fixture(scope="session")
def pipeline_models(tiny_model_specs) -> dict[str, dict]:
    """The session's tiny models (tests/conftest.py builds them once), by name."""
    return {spec["name"]: spec for spec in tiny_model_specs}


@pytest.fixture(scope="session")
def pipeline_models_root(pipeline_models) -> Path:
    return Path(pipeline_models["sticker-base"]["uri"]).parent


@pytest.fixture(scope="session")
def sticker_pipeline(pipeline_models) -> LoadedPipeline:
    return load_pipeline(
        pipeline_models["sticker-base"]["uri"], kind="image", device="cpu", dtype=torch.float32
    )


@pytest.fixture(scope="session")
def teacher_pipeline(pipeline_models) -> LoadedPipeline:
    return load_pipeline(
        pipeline_models["anim-teacher-a"]["uri"],
        kind="animation",
        device="cpu",
        dtype=torch.float32,
    )
