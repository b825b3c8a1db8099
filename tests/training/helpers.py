"""Helpers for job tests that need a finished output without training one."""

import json
import shutil
from pathlib import Path

from training_bridge.jobs.lifecycle import output_dir


def fake_finished_output(job, *, steps: int | None = None) -> Path:
    """Put a model folder (a copy of the base) and a matching training summary where the job's
    recipe would have written them, as if the run had finished."""
    folder = output_dir(job)
    shutil.copytree(job.base_model_version.uri, folder, dirs_exist_ok=True)
    summary = {
        "recipe": job.recipe,
        "datasets": [
            {"role": role, "manifest_sha256": sha}
            for role, sha in job.dataset_links.values_list("role", "manifest_sha256")
        ],
        "metrics": {
            "steps": job.total_steps if steps is None else steps,
            "final_loss": {"train": 0.5},
        },
        "default_params": {},
    }
    (folder / "training_summary.json").write_text(json.dumps(summary))
    return folder


def progress_events(job, losses: dict[str, list[float]]) -> list[dict]:
    """The events a run of ``len(losses[...])`` steps prints, one progress line per step."""
    steps = len(next(iter(losses.values())))
    events = [
        {
            "event": "start",
            "step": 0,
            "total": job.total_steps,
            "resumed_from": None,
            "load_s": 1.25,
        }
    ]
    for i in range(steps):
        events.append(
            {
                "event": "progress",
                "step": i + 1,
                "total": job.total_steps,
                "loss": {role: values[i] for role, values in losses.items()},
                "seconds_per_step": 0.1,
                "eta_s": 0.1 * (job.total_steps - i - 1),
            }
        )
    return events
