"""The training loop shared by every recipe: set-up, diffusion loss, steps, the whole run.

Shaped like diffusers' ``examples/text_to_image/train_text_to_image.py``: the VAE and text
encoder are frozen, the UNet (whole, LoRA adapters through peft, or only the motion modules of
an AnimateDiff UNet) learns to predict the noise (or the velocity, when the base scheduler's
``prediction_type`` is ``v_prediction``) at random timesteps; accelerate handles the device,
mixed precision, gradient accumulation and several processes, so the same code runs on a CPU
with the tiny models and under ``accelerate launch`` on GPUs.

What the recipes change is only which samples and timesteps make up each micro-batch (see
composition.py). encoding.py turns entries into the UNet's inputs, checkpoints.py saves and
resumes a run, validation.py measures the validation loss, output.py writes the trained model.

Randomness is a function of (seed, micro-batch index) alone: which entries a micro-batch takes,
its timesteps and its noise are drawn from generators seeded with them, and the data order is
a seeded permutation per epoch. A run resumed from a checkpoint therefore continues exactly as
the uninterrupted run would have, and the platform can assert that.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoints import list_checkpoints, load_checkpoint, save_checkpoint, spec_fingerprint
from .composition import Composition, RoleSampler, micro_seed, teacher_samples_seen
from .data import ExportedDataset, read_export
from .encoding import BatchEncoder
from .output import read_summary, save_output, trained_unet, training_summary
from .spec import (
    ANIMATION,
    DISTILL_STUDENT,
    DatasetFacts,
    ModelFacts,
    SpecError,
    TrainingSpec,
    check_spec,
)
from .validation import validation_loss

TIMESTEPS_FILE = "timesteps.jsonl"
PREDICTION_TYPES = ("epsilon", "v_prediction")
LORA_TARGET_MODULES = ["to_k", "to_q", "to_v", "to_out.0"]
# Timesteps kept in memory for the result (per role); the log file keeps them all.
MAX_KEPT_TIMESTEPS = 100_000

EventSink = Callable[[str, dict[str, Any]], None]


@dataclass
class TrainingResult:
    """What a run produced.

    Attributes:
        output_dir: the diffusers-format model folder (with README.md and training_summary.json).
        recipe: the recipe that ran.
        steps: optimizer steps done in total (equal to ``max_train_steps`` on success).
        resumed_from_step: the checkpoint step this process started from, or None.
        final_loss: per role, the mean loss of the last logging interval.
        metrics: everything recorded in the model card (losses, validation losses, timings,
            teacher counts, ...).
        sampled_timesteps: per role, the first MAX_KEPT_TIMESTEPS timesteps this process drew,
            in order; ``logs/timesteps.jsonl`` in the output has every step's (recorded when
            ``record_timesteps`` is on).
        teacher_counts: entries per teacher in the teacher-selection dataset (distill_student).
        load_seconds: time to load the model and read the datasets.
        train_seconds: time spent in training steps in this process.
    """

    output_dir: str
    recipe: str
    steps: int
    resumed_from_step: int | None
    final_loss: dict[str, float]
    metrics: dict[str, Any]
    sampled_timesteps: dict[str, list[int]] = field(default_factory=dict)
    teacher_counts: dict[str, int] = field(default_factory=dict)
    load_seconds: float = 0.0
    train_seconds: float = 0.0


class Trainer:
    """One run of a recipe. ``run()`` does everything; ``setup()`` and ``train_step()`` are
    public so a benchmark can time bare steps without checkpoints or progress output.

    Raises (from ``setup``):
        SpecError: invalid arguments (see spec.check_spec), a base model whose scheduler
            predicts something other than epsilon or v_prediction, fp16 on a CPU, or a
            checkpoint from a different run.
        generation.pipelines.ModelLoadError: the base model does not load.
    """

    def __init__(
        self,
        spec: TrainingSpec,
        *,
        on_event: EventSink | None = None,
        resume_from_checkpoint: str | None = None,
    ) -> None:
        self.spec = spec
        self.on_event = on_event
        self.resume_from_checkpoint = resume_from_checkpoint
        self.model_facts: ModelFacts
        self.dataset_facts: list[DatasetFacts]
        self.params: dict[str, Any]
        self.model_facts, self.dataset_facts, self.params = check_spec(spec)
        if self.model_facts.prediction_type not in PREDICTION_TYPES:
            raise SpecError(
                "base_model",
                f"The base model's scheduler predicts {self.model_facts.prediction_type!r}; the "
                f"recipes train {' or '.join(PREDICTION_TYPES)} models.",
            )
        if (
            resume_from_checkpoint not in (None, "latest")
            and not Path(resume_from_checkpoint).is_dir()
        ):
            raise SpecError(
                "resume_from_checkpoint",
                f"`resume_from_checkpoint` has to be 'latest' or a checkpoint folder but "
                f"{resume_from_checkpoint} does not exist.",
            )
        self.output_dir = Path(spec.output_dir)
        self.fingerprint = spec_fingerprint(spec, self.dataset_facts, self.params)
        self.global_step = 0
        self.resumed_from: int | None = None
        self.sampled_timesteps: dict[str, list[int]] = {}
        self.step_timesteps: dict[str, list[int]] = {}
        self._setup_done = False
        self._closed = False

    # -- set-up -------------------------------------------------------------------------------

    def _emit(self, event: str, **fields: Any) -> None:
        if self.on_event is not None and self.accelerator.is_main_process:
            self.on_event(event, fields)

    def setup(self) -> None:
        """Load the model and datasets, build the optimizer, and resume if asked (idempotent)."""
        if self._setup_done:
            return
        from accelerate import Accelerator
        from accelerate.utils import set_seed
        from diffusers import DDPMScheduler
        from diffusers.optimization import get_scheduler

        from generation.pipelines import load_pipeline

        started = time.perf_counter()
        p = self.params
        cpu = self.spec.device == "cpu" or (
            self.spec.device is None and not torch.cuda.is_available()
        )
        if self.spec.device == "cuda" and not torch.cuda.is_available():
            raise SpecError("device", "`device` is 'cuda' but CUDA is not available.")
        if cpu and p["mixed_precision"] == "fp16":
            raise SpecError(
                "params.mixed_precision",
                "`mixed_precision` 'fp16' needs a GPU; use 'no' or 'bf16'.",
            )
        self.accelerator = Accelerator(
            gradient_accumulation_steps=p["gradient_accumulation_steps"],
            mixed_precision=p["mixed_precision"],
            cpu=cpu,
        )
        set_seed(p["seed"])
        self.is_animation = self.model_facts.kind == ANIMATION
        num_frames = p.get("num_frames")
        self.datasets: dict[str, ExportedDataset] = {}
        self.validation: dict[str, ExportedDataset] = {}
        for dataset in self.spec.datasets:
            self.datasets[dataset.role] = read_export(
                dataset.path, role=dataset.role, min_frames=num_frames
            )
            self.validation[dataset.role] = read_export(
                dataset.path, role=dataset.role, split="validation", min_frames=num_frames
            )
        self.roles = [d.role for d in self.spec.datasets]
        self.samplers = {
            role: RoleSampler(len(self.datasets[role].entries), seed=p["seed"], salt=index)
            for index, role in enumerate(self.roles)
        }

        # The pipeline loads on the CPU in float32: trainable weights stay float32 under mixed
        # precision (autocast computes in half), as in diffusers' training examples.
        loaded = load_pipeline(
            self.spec.base_model, kind=self.model_facts.kind, device="cpu", dtype=torch.float32
        )
        self.pipe = loaded.pipe
        self.noise_scheduler = DDPMScheduler.from_config(self.pipe.scheduler.config)
        self.weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(
            p["mixed_precision"], torch.float32
        )
        device = self.accelerator.device
        self.vae = self.pipe.vae.requires_grad_(False).eval()
        self.text_encoder = self.pipe.text_encoder.requires_grad_(False).eval()
        # Casting a module to the dtype it already has logs a warning per call; skip that.
        if self.weight_dtype != torch.float32:
            self.vae.to(dtype=self.weight_dtype)
            self.text_encoder.to(dtype=self.weight_dtype)
        self.vae.to(device)
        self.text_encoder.to(device)
        self.encoder = BatchEncoder(
            vae=self.vae,
            text_encoder=self.text_encoder,
            tokenizer=self.pipe.tokenizer,
            device=device,
            weight_dtype=self.weight_dtype,
            is_animation=self.is_animation,
            resolution=p["resolution"],
            num_frames=num_frames,
        )
        unet = self.pipe.unet
        unet.train()
        method = p["method"]
        if method == "full":
            unet.requires_grad_(True)
        elif method == "motion":
            unet.freeze_unet2d_params()
        else:
            from peft import LoraConfig

            unet.requires_grad_(False)
            unet.add_adapter(
                LoraConfig(
                    r=p["lora_rank"],
                    lora_alpha=p["lora_alpha"],
                    init_lora_weights="gaussian",
                    target_modules=LORA_TARGET_MODULES,
                )
            )
        trainable = [param for param in unet.parameters() if param.requires_grad]
        self.trainable_names = [n for n, param in unet.named_parameters() if param.requires_grad]
        optimizer = torch.optim.AdamW(
            trainable, lr=p["learning_rate"], weight_decay=p["adam_weight_decay"]
        )
        processes = self.accelerator.num_processes
        lr_scheduler = get_scheduler(
            p["lr_scheduler"],
            optimizer=optimizer,
            num_warmup_steps=p["lr_warmup_steps"] * processes,
            num_training_steps=p["max_train_steps"] * processes,
        )
        self.unet, self.optimizer, self.lr_scheduler = self.accelerator.prepare(
            unet, optimizer, lr_scheduler
        )
        self.micro_per_step = p["gradient_accumulation_steps"] * processes
        self.composition = Composition(
            self.spec.recipe,
            p,
            num_train_timesteps=self.model_facts.num_train_timesteps,
            roles=self.roles,
            micro_per_step=self.micro_per_step,
        )
        self._resume()
        self.load_seconds = time.perf_counter() - started
        self._setup_done = True

    def _resume(self) -> None:
        if self.resume_from_checkpoint is None:
            return
        if self.resume_from_checkpoint == "latest":
            checkpoints = list_checkpoints(self.output_dir)
            if not checkpoints:
                return
            path = checkpoints[-1][1]
        else:
            path = Path(self.resume_from_checkpoint)
        state = load_checkpoint(
            path,
            self.accelerator.unwrap_model(self.unet),
            self.optimizer,
            self.lr_scheduler,
            fingerprint=self.fingerprint,
            trainable_names=self.trainable_names,
        )
        self.global_step = int(state["step"])
        self.resumed_from = self.global_step
        self.last_loss = state.get("last_loss") or {}
        log = self.output_dir / "logs" / TIMESTEPS_FILE
        if log.is_file() and self.accelerator.is_main_process:
            # Steps after the checkpoint ran before the crash and will run again: drop them, so
            # the log holds each step once.
            kept = [
                line
                for line in log.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line)["step"] <= self.global_step
            ]
            log.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")

    # -- one step -----------------------------------------------------------------------------

    def _micro_batch_loss(self, micro: int) -> tuple[torch.Tensor, dict[str, tuple[float, int]]]:
        """Loss of micro-batch ``micro``; also (sum of per-sample losses, count) per role."""
        generator = torch.Generator().manual_seed(micro_seed(self.params["seed"], micro))
        parts = self.composition.parts(micro)
        entries, roles, timesteps = [], [], []
        for part in parts:
            dataset = self.datasets[part.role].entries
            for index in self.samplers[part.role].take(part.start, part.count):
                entries.append(dataset[index])
                roles.append(part.role)
            ts = torch.randint(part.low, part.high, (part.count,), generator=generator)
            timesteps.append(ts)
            if self.params["record_timesteps"]:
                drawn = ts.tolist()
                self.step_timesteps.setdefault(part.role, []).extend(drawn)
                kept = self.sampled_timesteps.setdefault(part.role, [])
                if len(kept) < MAX_KEPT_TIMESTEPS:
                    kept.extend(drawn[: MAX_KEPT_TIMESTEPS - len(kept)])
        timesteps_t = torch.cat(timesteps).long().to(self.accelerator.device)
        pixels = torch.from_numpy(np.stack([self.encoder.pixels(e) for e in entries]))
        with torch.no_grad():
            latents = self.encoder.encode_latents(pixels, generator)
            text = self.encoder.encode_text(
                [e.text for e in entries], self.params["num_frames"] if self.is_animation else 1
            )
        noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(
            latents.device, dtype=latents.dtype
        )
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps_t)
        if self.model_facts.prediction_type == "epsilon":
            target = noise
        else:
            target = self.noise_scheduler.get_velocity(latents, noise, timesteps_t)
        prediction = self.unet(noisy, timesteps_t, encoder_hidden_states=text, return_dict=False)[0]
        per_sample = F.mse_loss(prediction.float(), target.float(), reduction="none")
        per_sample = per_sample.mean(dim=list(range(1, per_sample.ndim)))
        by_role: dict[str, tuple[float, int]] = {}
        detached = per_sample.detach()
        for role in dict.fromkeys(roles):
            mask = torch.tensor([r == role for r in roles], device=detached.device)
            by_role[role] = (float(detached[mask].sum()), int(mask.sum()))
        return per_sample.mean(), by_role

    def train_step(self) -> dict[str, float]:
        """One optimizer step (all its accumulation micro-batches); the mean loss per role."""
        accelerator = self.accelerator
        sums: dict[str, list[float]] = {}
        base = self.global_step * self.micro_per_step
        for accumulation in range(self.params["gradient_accumulation_steps"]):
            micro = base + accumulation * accelerator.num_processes + accelerator.process_index
            with accelerator.accumulate(self.unet):
                loss, by_role = self._micro_batch_loss(micro)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(
                        [p for p in self.unet.parameters() if p.requires_grad],
                        self.params["max_grad_norm"],
                    )
                self.optimizer.step()
                self.lr_scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
            for role, (total, count) in by_role.items():
                entry = sums.setdefault(role, [0.0, 0])
                entry[0] += total
                entry[1] += count
        if accelerator.num_processes > 1:
            roles = sorted(set(self.roles))
            local = torch.tensor(
                [[sums.get(r, [0.0, 0])[0], sums.get(r, [0.0, 0])[1]] for r in roles],
                device=accelerator.device,
            )
            total = accelerator.reduce(local, "sum")
            sums = {r: [float(total[i, 0]), int(total[i, 1])] for i, r in enumerate(roles)}
        self.global_step += 1
        return {role: s / n for role, (s, n) in sums.items() if n}

    # -- checkpoints and output ---------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        """Write ``checkpoint-<step>`` for the current step (see checkpoints.save_checkpoint)."""
        return save_checkpoint(
            self.accelerator,
            self.unet,
            self.optimizer,
            self.lr_scheduler,
            output_dir=self.output_dir,
            state={
                "step": self.global_step,
                "fingerprint": self.fingerprint,
                "recipe": self.spec.recipe,
                "last_loss": getattr(self, "last_loss", {}),
            },
            total_limit=self.params["checkpoints_total_limit"],
        )

    def save_output(self, metrics: dict[str, Any]) -> None:
        """Write the output folder (see output.save_output), from the main process only."""
        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            return
        unet = trained_unet(
            self.accelerator.unwrap_model(self.unet),
            method=self.params["method"],
            output_dir=self.output_dir,
        )
        save_output(
            self.pipe,
            unet,
            output_dir=self.output_dir,
            summary=training_summary(
                self.spec,
                self.model_facts,
                self.dataset_facts,
                self.params,
                metrics,
                datasets=self.datasets,
                validation=self.validation,
                fingerprint=self.fingerprint,
                is_animation=self.is_animation,
            ),
            is_animation=self.is_animation,
            keep_checkpoints=self.params["keep_checkpoints"],
        )

    # -- the whole run ------------------------------------------------------------------------

    def _existing_result(self) -> TrainingResult | None:
        """The finished output of this same run, if a previous process completed it."""
        summary = read_summary(self.output_dir, self.fingerprint)
        if summary is None:
            return None
        metrics = summary["metrics"]
        return TrainingResult(
            output_dir=str(self.output_dir),
            recipe=self.spec.recipe,
            steps=int(metrics["steps"]),
            resumed_from_step=int(metrics["steps"]),
            final_loss=metrics.get("final_loss", {}),
            metrics=metrics,
            teacher_counts=metrics.get("teacher_counts", {}),
        )

    def run(self) -> TrainingResult:
        """Train to ``max_train_steps`` (from the latest checkpoint when resuming), save, report."""
        done = self._existing_result() if self.resume_from_checkpoint else None
        if done is not None:
            if self.on_event is not None:
                self.on_event(
                    "done",
                    {
                        "step": done.steps,
                        "total": done.steps,
                        "output_dir": done.output_dir,
                        "metrics": done.metrics,
                    },
                )
            return done
        self.setup()
        p = self.params
        total = p["max_train_steps"]
        teacher_counts = (
            self.datasets[self.roles[0]].teacher_counts
            if self.spec.recipe == DISTILL_STUDENT
            else {}
        )
        self._emit(
            "start",
            recipe=self.spec.recipe,
            step=self.global_step,
            total=total,
            resumed_from=self.resumed_from,
            load_s=round(self.load_seconds, 4),
            device=str(self.accelerator.device),
            num_processes=self.accelerator.num_processes,
            datasets=[
                {
                    "role": d.role,
                    "path": d.path,
                    "manifest_sha256": f.manifest_sha256,
                    "entries": len(self.datasets[d.role].entries),
                }
                for d, f in zip(self.spec.datasets, self.dataset_facts, strict=True)
            ],
            teacher_counts=teacher_counts,
        )
        timesteps_log = None
        if p["record_timesteps"] and self.accelerator.is_main_process:
            (self.output_dir / "logs").mkdir(parents=True, exist_ok=True)
            # A fresh run starts the log anew; a resumed one kept the steps up to its checkpoint.
            mode = "w" if self.resumed_from is None else "a"
            timesteps_log = (self.output_dir / "logs" / TIMESTEPS_FILE).open(mode, encoding="utf-8")
        window: dict[str, list[float]] = {}
        window_started = time.perf_counter()
        window_steps = 0
        train_seconds = 0.0
        self.last_loss = getattr(self, "last_loss", {})
        try:
            while self.global_step < total:
                step_started = time.perf_counter()
                self.step_timesteps = {}
                losses = self.train_step()
                train_seconds += time.perf_counter() - step_started
                window_steps += 1
                for role, loss in losses.items():
                    entry = window.setdefault(role, [0.0, 0])
                    entry[0] += loss
                    entry[1] += 1
                if timesteps_log is not None:
                    timesteps_log.write(
                        json.dumps({"step": self.global_step, "timesteps": self.step_timesteps})
                        + "\n"
                    )
                step = self.global_step
                if step % p["logging_steps"] == 0 or step == total:
                    elapsed = time.perf_counter() - window_started
                    per_step = elapsed / window_steps
                    self.last_loss = {r: s / n for r, (s, n) in window.items()}
                    self._emit(
                        "progress",
                        step=step,
                        total=total,
                        loss={r: round(v, 6) for r, v in self.last_loss.items()},
                        seconds_per_step=round(per_step, 5),
                        eta_s=round(per_step * (total - step), 2),
                        lr=self.lr_scheduler.get_last_lr()[0],
                    )
                    window, window_steps, window_started = {}, 0, time.perf_counter()
                if step % p["checkpointing_steps"] == 0 and step < total:
                    if timesteps_log is not None:
                        timesteps_log.flush()
                    path = self.save_checkpoint()
                    self._emit("checkpoint", step=step, path=str(path))
        finally:
            if timesteps_log is not None:
                timesteps_log.close()
        validation = validation_loss(
            self.accelerator.unwrap_model(self.unet),
            self.encoder,
            self.noise_scheduler,
            self.validation,
            roles=self.roles,
            recipe=self.spec.recipe,
            model_facts=self.model_facts,
            params=p,
            autocast=self.accelerator.autocast,
        )
        metrics = {
            "steps": self.global_step,
            "final_loss": {r: round(v, 6) for r, v in self.last_loss.items()},
            "validation_loss": {r: round(v, 6) for r, v in validation.items()},
            "resumed_from_step": self.resumed_from,
            "load_seconds": round(self.load_seconds, 3),
            "train_seconds_this_process": round(train_seconds, 3),
            "seconds_per_step": round(train_seconds / max(1, total - (self.resumed_from or 0)), 5),
            "device": str(self.accelerator.device),
            "num_processes": self.accelerator.num_processes,
            "samples_seen": self.composition.positions_until(total * self.micro_per_step),
        }
        if self.spec.recipe == DISTILL_STUDENT:
            metrics["teacher_counts"] = teacher_counts
            metrics["teacher_samples_seen"] = teacher_samples_seen(
                self.datasets[self.roles[0]].entries,
                self.composition,
                role=self.roles[0],
                seed=p["seed"],
                micro_count=total * self.micro_per_step,
            )
        self.save_output(metrics)
        self._emit(
            "done",
            step=self.global_step,
            total=total,
            output_dir=str(self.output_dir),
            metrics=metrics,
        )
        result = TrainingResult(
            output_dir=str(self.output_dir),
            recipe=self.spec.recipe,
            steps=self.global_step,
            resumed_from_step=self.resumed_from,
            final_loss=metrics["final_loss"],
            metrics=metrics,
            sampled_timesteps={r: list(v) for r, v in self.sampled_timesteps.items()},
            teacher_counts=teacher_counts,
            load_seconds=self.load_seconds,
            train_seconds=train_seconds,
        )
        self.close()
        return result

    def close(self) -> None:
        """Forget accelerate's process-wide state, so another run can start in this process."""
        accelerator = getattr(self, "accelerator", None)
        if accelerator is None or self._closed:
            return
        self._closed = True
        if accelerator.num_processes > 1:
            return
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
