"""Fixtures for the training tests: dataset exports on disk in the curation layout."""

from pathlib import Path

import pytest

from tests.factories import animation_export, image_export


@pytest.fixture(scope="session")
def exports(tmp_path_factory) -> dict[str, Path]:
    """One export per purpose the recipes take, built once per session (read-only)."""
    root = tmp_path_factory.mktemp("exports")
    return {
        "alignment": image_export(root / "alignment", purpose="alignment", dataset_version_id=1),
        "style": image_export(
            root / "style", purpose="style", dataset_version_id=2, caption="a flat vivid sticker"
        ),
        "teacher_selection": animation_export(root / "teachers", dataset_version_id=3),
        "evaluation": image_export(root / "evaluation", purpose="evaluation", dataset_version_id=4),
        "motion": animation_export(
            root / "motion",
            purpose="motion",
            teachers=(),
            dataset_version_id=5,
            with_frames_dir=False,
        ),
    }


@pytest.fixture(autouse=True)
def _training_dir(settings, tmp_path):
    """Each test's job folders (specs, logs, checkpoints, trained models) in its own tmp folder."""
    settings.TRAINING_DIR = tmp_path / "training"
    settings.TRAINING_DEVICE = "cpu"
    return settings.TRAINING_DIR


@pytest.fixture
def datasets(models):
    """Published dataset versions (with real files) for every role."""
    from tests import factories

    return {
        "alignment": factories.dataset_version(models, purpose="alignment"),
        "style": factories.dataset_version(models, purpose="style"),
        "teacher_selection": factories.dataset_version(
            models, purpose="teacher_selection", kind="animation"
        ),
    }
