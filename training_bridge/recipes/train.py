"""Train a sticker or animation model from dataset exports: one self-contained entry point.

    python -m training_bridge.recipes.train --spec job.json [--resume-from-checkpoint latest]
    python -m training_bridge.recipes.train --recipe style_tailoring \\
        --base-model var/models/sticker-base \\
        --dataset content=exports/7 --dataset style=exports/9 \\
        --output-dir out/st --max-train-steps 1000 --timestep-split 600
    accelerate launch -m training_bridge.recipes.train --spec job.json   # on GPUs

Progress goes to stdout as JSON lines (see progress.py); logs go to stderr. Exit status: 0 on
success, 2 for invalid arguments (the ``error`` event names the field), 1 for anything else.
From Python: ``train(spec) -> TrainingResult``. Nothing here imports Django.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from .progress import emit
from .spec import PARAMS, RECIPES, DatasetSpec, SpecError, TrainingSpec, check_spec

if TYPE_CHECKING:
    from .loop import TrainingResult


def train(
    spec: TrainingSpec,
    *,
    resume_from_checkpoint: str | None = None,
    on_event=None,
) -> TrainingResult:
    """Run ``spec`` to the end and return what it produced.

    ``resume_from_checkpoint`` is None (start fresh), "latest" (continue from the newest
    checkpoint under ``spec.output_dir``, or start fresh when there is none; a finished output
    of the same run is returned as is) or a checkpoint folder. ``on_event(event, fields)``
    receives the progress events (see progress.py).

    Raises:
        SpecError: invalid arguments, raised before any weights load.
        generation.pipelines.ModelLoadError: the base model does not load.
    """
    # torch and diffusers load only now, after the arguments passed their checks.
    from .loop import Trainer

    trainer = Trainer(spec, on_event=on_event, resume_from_checkpoint=resume_from_checkpoint)
    try:
        return trainer.run()
    finally:
        trainer.close()


def _parse_value(kind: type, text: str) -> Any:
    if kind is bool:
        if text.lower() in ("1", "true", "yes"):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
        raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")
    if kind is int:
        return int(text)
    if kind is float:
        return float(text)
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training_bridge.recipes.train",
        description="Train a diffusers sticker or animation model from dataset exports.",
    )
    parser.add_argument("--spec", help="A job spec JSON file; flags below override its params.")
    parser.add_argument("--recipe", choices=RECIPES)
    parser.add_argument("--base-model", help="Folder of the diffusers base model.")
    parser.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="ROLE=PATH",
        help="A dataset export and its role; repeat for recipes with two datasets.",
    )
    parser.add_argument("--output-dir")
    parser.add_argument("--device", choices=["cpu", "cuda"])
    parser.add_argument(
        "--resume-from-checkpoint",
        metavar="latest|PATH",
        help="Continue from the newest checkpoint in --output-dir, or from the given one.",
    )
    for name, (kind, _default) in PARAMS.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=f"param_{name}",
            default=None,
            type=lambda text, kind=kind: _parse_value(kind, text),
        )
    return parser


def spec_from_args(args: argparse.Namespace) -> TrainingSpec:
    if args.spec:
        spec = TrainingSpec.from_file(args.spec)
    else:
        missing = [
            flag
            for flag, value in (
                ("--recipe", args.recipe),
                ("--base-model", args.base_model),
                ("--output-dir", args.output_dir),
            )
            if not value
        ]
        if missing:
            raise SpecError("spec", f"Give --spec, or {', '.join(missing)} and --dataset.")
        spec = TrainingSpec(
            recipe=args.recipe, base_model=args.base_model, datasets=[], output_dir=args.output_dir
        )
    if args.recipe:
        spec.recipe = args.recipe
    if args.base_model:
        spec.base_model = args.base_model
    if args.output_dir:
        spec.output_dir = args.output_dir
    if args.device:
        spec.device = args.device
    if args.dataset:
        datasets = []
        for item in args.dataset:
            role, sep, path = item.partition("=")
            if not sep or not role or not path:
                raise SpecError("datasets", f"--dataset takes ROLE=PATH, not {item!r}.")
            datasets.append(DatasetSpec(role=role, path=path))
        spec.datasets = datasets
    for name in PARAMS:
        value = getattr(args, f"param_{name}")
        if value is not None:
            spec.params[name] = value
    return spec


def quiet_libraries() -> None:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    # Progress bars would interleave with the JSON lines' consumer's log; the events say it all.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        spec = spec_from_args(args)
        # Checked before torch is imported (seconds), so bad arguments fail at once.
        check_spec(spec)
        quiet_libraries()
        train(
            spec,
            resume_from_checkpoint=args.resume_from_checkpoint,
            on_event=lambda event, fields: emit(event, **fields),
        )
    except SpecError as exc:
        emit("error", message=str(exc), type="SpecError", field=exc.field)
        return 2
    except Exception as exc:
        # Everything else (a model that does not load, out of memory, a bug) fails the run
        # with its message; the traceback goes to stderr for the log.
        logging.getLogger(__name__).exception("training failed")
        emit("error", message=f"{type(exc).__name__}: {exc}", type=type(exc).__name__)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
