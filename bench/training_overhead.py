"""Training overhead: N finetune steps through a job against the same steps in a bare loop.

Job: a finetune job on published dataset versions → the ``train`` queue on a real Celery worker
→ the recipe in a subprocess → progress lines parsed into the job row every 0.5 s, a checkpoint
half-way, the final diffusers save → registration as a model version. Bare: the same recipe's
``Trainer.train_step`` called N times in this process, same spec, seed and device.

``job_s`` runs from the recipe's ``start`` event (model loaded) to its ``done`` event (model
saved), as stamped by the recipe itself, so it holds the steps, progress output and writes, the
checkpoint and the final save. The one-time parts are reported beside it: ``startup_s`` (queue,
process start, imports and model load, i.e. job creation to ``start``), ``load_s`` (the model and
data load alone) and ``register_s`` (``done`` to the job row SUCCEEDED).

    python bench/training_overhead.py [--quick]

Last line: {"bench": "training_overhead", "steps": N, "job_s": …, "bare_s": …,
"overhead_ratio": …, "load_s": …, ...}. Target: overhead_ratio ≤ 1.15.
"""

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC
from pathlib import Path

from _common import ROOT, emit, setup_django, start_worker, stop_worker, wait_until


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small size, for CI")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--method", choices=["lora", "full"], default="lora")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads on both sides (the recipe process gets OMP_NUM_THREADS)",
    )
    args = parser.parse_args()
    steps = args.steps or (60 if args.quick else 300)

    env = setup_django("bench_training")
    training_dir = Path(tempfile.mkdtemp(prefix="stickerloop-bench-training-"))
    env.update(
        {
            "STICKERLOOP_TRAINING_DIR": str(training_dir),
            "STICKERLOOP_TRAINING_DEVICE": "cpu",
            # On the 2-core machine two torch threads spin against the worker and PostgreSQL
            # and steps take several times longer; both sides run on the same thread count.
            "OMP_NUM_THREADS": str(args.threads),
        }
    )
    from django.conf import settings

    settings.TRAINING_DIR = training_dir
    sys.path.insert(0, str(ROOT))
    from generation.pipelines import build_tiny_sticker_model
    from generation.pipelines.tiny import IMAGE_DEFAULT_PARAMS
    from generation.services.model_versions import model_version_register
    from tests import factories
    from training_bridge.jobs.lifecycle import training_job_create
    from training_bridge.jobs.models import JobStatus, TrainingJob
    from training_bridge.recipes.loop import Trainer

    # Only the sticker model: finetuning needs no animation model (saves their build time).
    models_root = Path(tempfile.mkdtemp(prefix="stickerloop-bench-models-"))
    base = model_version_register(
        name="sticker-base",
        kind="image",
        uri=str(build_tiny_sticker_model(models_root / "sticker-base")),
        default_params=dict(IMAGE_DEFAULT_PARAMS),
    )
    models = {"sticker-base": base}
    dataset = factories.dataset_version(models, purpose="alignment", train=16, validation=2)
    params = {
        "max_train_steps": steps,
        "train_batch_size": args.batch_size,
        "method": args.method,
        "checkpointing_steps": max(1, steps // 2),
        "seed": 0,
    }

    worker = start_worker("train", env, training_dir / "worker.log")
    try:
        created = time.time()
        job = training_job_create(
            recipe="finetune",
            base_model_version=models["sticker-base"],
            datasets={"train": dataset},
            params=params,
            evaluate=False,
        )
        # The phases are timed by the recipe's own event stamps, so polling slowly loses no
        # precision and leaves the CPU to the run.
        wait_until(
            lambda: TrainingJob.objects.get(pk=job.pk).is_finished, timeout=1800, interval=0.5
        )
    finally:
        stop_worker(worker)
    job.refresh_from_db()
    if job.status != JobStatus.SUCCEEDED:
        sys.exit(f"the job ended {job.status}: {job.error}\n{job.log_tail[-2000:]}")
    events = {}
    for line in (Path(job.work_dir) / "train.log").read_text().splitlines():
        if line.startswith('{"event"'):
            event = json.loads(line)
            events.setdefault(event["event"], event)
    start, done = events["start"], events["done"]
    job_s = done["time"] - start["time"]
    succeeded = job.finished_at.astimezone(UTC).timestamp()

    # The bare loop: the same spec through the same Trainer, steps only.
    import torch

    from training_bridge.jobs.execution import build_spec

    torch.set_num_threads(args.threads)

    spec = build_spec(job, {"train": job.dataset_links.get().export_path}, device="cpu")
    spec.output_dir = str(training_dir / "bare")
    trainer = Trainer(spec)
    loaded = time.perf_counter()
    trainer.setup()
    bare_load_s = time.perf_counter() - loaded
    started = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    bare_s = time.perf_counter() - started
    trainer.close()

    emit(
        {
            "bench": "training_overhead",
            "steps": steps,
            "batch_size": args.batch_size,
            "method": args.method,
            "threads": args.threads,
            "job_s": round(job_s, 3),
            "bare_s": round(bare_s, 3),
            "overhead_ratio": round(job_s / bare_s, 3),
            "startup_s": round(start["time"] - created, 3),
            "load_s": round(float(start["load_s"]), 3),
            "bare_load_s": round(bare_load_s, 3),
            "register_s": round(succeeded - done["time"], 3),
            "checkpoints": 1 if steps >= 2 else 0,
        }
    )


if __name__ == "__main__":
    sys.exit(main())
