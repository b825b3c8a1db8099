"""Training a text-to-sticker model from scratch: an RGBA VAE, then a text encoder and UNet;
and the RGB VAE that video models built on it read white composites with.

The finetuning recipes (``loop``) start from an existing model; these two stages make the model
they start from. Both run on in-memory arrays, on one CPU thread if asked, and are
deterministic for a given seed (``torch.use_deterministic_algorithms``), so the default models
can be rebuilt bit for bit.

Both can run data-parallel over a ``Shard`` of a gloo process group: every process draws the
same global batch from the same generator and computes its own slice, and the gradients are
averaged before each step, so the replicas stay identical. With two processes the average is
``(a + b) / 2``, which floating point gives the same whichever side adds, so a build on the same
number of processes stays bit for bit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

Report = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class Shard:
    """This process's part of a data-parallel run: ``rank`` of ``size`` (1: no process group)."""

    rank: int = 0
    size: int = 1

    def part(self, batch: torch.Tensor) -> torch.Tensor:
        """This process's slice of a global batch (the batch size divides by ``size``)."""
        share = len(batch) // self.size
        return batch[self.rank * share : (self.rank + 1) * share]

    def average(self, parameters: list[torch.nn.Parameter], loss: torch.Tensor) -> float:
        """Average gradients and ``loss`` over the processes in one all-reduce; returns the loss.

        One flat buffer per step instead of one call per tensor: a few hundred small
        all-reduces would cost more than the step's arithmetic.
        """
        if self.size == 1:
            return loss.item()
        import torch.distributed as dist

        # A tensor no step reaches has no gradient on any process; leave it alone everywhere.
        parameters = [p for p in parameters if p.grad is not None]
        grads = [p.grad.reshape(-1) for p in parameters]
        flat = torch.cat([*grads, loss.detach().reshape(1)])
        dist.all_reduce(flat)
        flat /= self.size
        offset = 0
        for p in parameters:
            count = p.grad.numel()
            p.grad.copy_(flat[offset : offset + count].view_as(p.grad))
            offset += count
        return flat[-1].item()

    def gather(self, part: torch.Tensor) -> torch.Tensor:
        """Every process's ``part`` (equal shapes), concatenated in rank order."""
        if self.size == 1:
            return part
        import torch.distributed as dist

        parts = [torch.empty_like(part) for _ in range(self.size)]
        dist.all_gather(parts, part.contiguous())
        return torch.cat(parts)

    def check_identical(self, parameters: list[torch.nn.Parameter]) -> None:
        """Fail unless every replica ended with the same weights (a float64 sum per tensor)."""
        if self.size == 1:
            return
        import torch.distributed as dist

        mine = torch.stack([p.detach().double().sum() for p in parameters])
        parts = [torch.empty_like(mine) for _ in range(self.size)]
        dist.all_gather(parts, mine)
        if any(not torch.equal(parts[0], other) for other in parts[1:]):
            raise RuntimeError("data-parallel replicas diverged")


@dataclass(frozen=True)
class VaeSettings:
    steps: int = 1200
    batch_size: int = 32
    learning_rate: float = 1e-3
    kl_weight: float = 1e-6
    # L1 beside the squared error: small colour errors keep a full-size gradient, so flat
    # colours come out saturated rather than slightly washed out.
    l1_weight: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class TextToImageSettings:
    steps: int = 3000
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_steps: int = 200
    # Captions dropped to the empty prompt, so classifier-free guidance has an unconditional
    # model to steer away from.
    uncond_rate: float = 0.1
    seed: int = 0


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC RGBA -> float NCHW in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def _warmup(optimizer: torch.optim.Optimizer, steps: int, warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        # Cosine decay to a tenth of the peak rate.
        progress = (step - warmup) / max(1, total - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_vae(
    images: np.ndarray,
    vae: Any,
    settings: VaeSettings,
    *,
    report: Report | None = None,
    shard: Shard = Shard(),
) -> dict[str, float]:
    """Train ``vae`` (an AutoencoderKL with 4 channels in and out) to reconstruct ``images``.

    ``images`` are uint8 RGBA arrays (N, H, W, 4). Loss: mean squared error on all four channels
    and L1, plus a small KL term. Returns the final metrics.
    """
    generator = torch.Generator().manual_seed(settings.seed)
    vae.train()
    parameters = list(vae.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=0.0)
    scheduler = _warmup(optimizer, settings.steps, min(100, settings.steps // 10), settings.steps)
    started = time.perf_counter()
    metrics: dict[str, float] = {}
    for step in range(settings.steps):
        index = torch.randint(0, len(images), (settings.batch_size,), generator=generator)
        batch = _to_tensor(images[shard.part(index).numpy()])
        posterior = vae.encode(batch).latent_dist
        # A sample, not the mean: the decoder must stay right when the UNet's latents are a
        # little off. Drawn for the global batch, so every process's generator stays in step.
        eps = torch.randn((settings.batch_size, *posterior.mean.shape[1:]), generator=generator)
        latents = posterior.mean + posterior.std * shard.part(eps)
        recon = vae.decode(latents).sample
        mse = torch.nn.functional.mse_loss(recon, batch)
        l1 = torch.nn.functional.l1_loss(recon, batch)
        kl = posterior.kl().mean()
        loss = mse + settings.l1_weight * l1 + settings.kl_weight * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        value = shard.average(parameters, loss)
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        scheduler.step()
        metrics = {"step": step + 1, "loss": value, "mse": mse.item(), "kl": kl.item()}
        if report and (step + 1) % 50 == 0:
            report("vae", {**metrics, "seconds": round(time.perf_counter() - started, 1)})
    shard.check_identical(parameters)
    vae.eval()
    return metrics


@dataclass(frozen=True)
class CompositeVaeSettings:
    steps: int = 300
    batch_size: int = 32
    learning_rate: float = 5e-4
    seed: int = 0


def composite_over_white(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC RGBA -> float32 NHWC RGB on 0-255, each pixel over an opaque white background."""
    alpha = images[..., 3:4].astype(np.float32) / 255.0
    return images[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)


def train_composite_vae(
    images: np.ndarray,
    rgba_vae: Any,
    rgb_vae: Any,
    settings: CompositeVaeSettings,
    *,
    report: Report | None = None,
    shard: Shard = Shard(),
) -> dict[str, float]:
    """Train ``rgb_vae`` (3 channels) to work on white composites in ``rgba_vae``'s latent space.

    Video pipelines see a sticker composited over white. ``tiny.rgb_vae_from_rgba`` folds the
    RGBA VAE into 3 channels by assuming alpha 1 everywhere, so it reads the white background
    as opaque white content: its latents of a composite are as far from the RGBA VAE's latents
    of the sticker as those latents' own spread, and its decoder draws transparent pixels'
    colour instead of white. The UNet a video model reuses only knows the RGBA VAE's latents.
    So the encoder learns to give the RGBA encoder's mean from the composite, and the decoder
    to draw the composite from a sample of the RGBA posterior. ``images`` are uint8 RGBA
    arrays (N, H, W, 4); ``rgb_vae`` starts as the fold. Returns the final metrics.
    """
    rgba_vae.eval().requires_grad_(False)
    with torch.no_grad():
        mine = shard.part(torch.from_numpy(images))
        posteriors = [
            rgba_vae.encode(_to_tensor(mine[start : start + 256].numpy())).latent_dist
            for start in range(0, len(mine), 256)
        ]
        target_mean = shard.gather(torch.cat([p.mean for p in posteriors]))
        target_std = shard.gather(torch.cat([p.std for p in posteriors]))
    composites = torch.from_numpy(composite_over_white(images)).permute(0, 3, 1, 2)
    composites = composites.div(127.5).sub(1.0)
    generator = torch.Generator().manual_seed(settings.seed)
    rgb_vae.train()
    parameters = list(rgb_vae.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=0.0)
    started = time.perf_counter()
    metrics: dict[str, float] = {}
    for step in range(settings.steps):
        index = shard.part(
            torch.randint(0, len(images), (settings.batch_size,), generator=generator)
        )
        eps = torch.randn((settings.batch_size, *target_mean.shape[1:]), generator=generator)
        batch = composites[index]
        encoded = rgb_vae.encode(batch).latent_dist.mean
        encoder_loss = torch.nn.functional.mse_loss(encoded, target_mean[index])
        latents = target_mean[index] + target_std[index] * shard.part(eps)
        drawn = rgb_vae.decode(latents).sample
        decoder_loss = torch.nn.functional.mse_loss(drawn, batch)
        decoder_loss = decoder_loss + torch.nn.functional.l1_loss(drawn, batch)
        loss = encoder_loss + decoder_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        value = shard.average(parameters, loss)
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        metrics = {
            "step": step + 1,
            "loss": value,
            "encoder": encoder_loss.item(),
            "decoder": decoder_loss.item(),
        }
        if report and (step + 1) % 50 == 0:
            report("composite_vae", {**metrics, "seconds": round(time.perf_counter() - started, 1)})
    shard.check_identical(parameters)
    rgb_vae.eval()
    return metrics


@torch.no_grad()
def encode_latents(
    images: np.ndarray, vae: Any, *, batch_size: int = 256, shard: Shard = Shard()
) -> torch.Tensor:
    """The posterior means of ``images`` (unscaled), in order; each process encodes its part."""
    share = len(images) // shard.size
    mine = images[shard.rank * share : (shard.rank + 1) * share]
    chunks = []
    for start in range(0, len(mine), batch_size):
        batch = _to_tensor(mine[start : start + batch_size])
        chunks.append(vae.encode(batch).latent_dist.mean)
    return shard.gather(torch.cat(chunks))


def tokenize(tokenizer: Any, captions: list[str]) -> torch.Tensor:
    return tokenizer(
        captions,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


def train_text_to_image(
    latents: torch.Tensor,
    input_ids: torch.Tensor,
    empty_ids: torch.Tensor,
    *,
    unet: Any,
    text_encoder: Any,
    noise_scheduler: Any,
    settings: TextToImageSettings,
    report: Report | None = None,
    shard: Shard = Shard(),
) -> dict[str, float]:
    """Train ``unet`` and ``text_encoder`` together on scaled ``latents`` and their captions.

    ``input_ids`` holds one tokenized caption per latent; ``empty_ids`` is the tokenized empty
    prompt. Epsilon-prediction loss at uniformly drawn timesteps, as Stable Diffusion.
    """
    generator = torch.Generator().manual_seed(settings.seed)
    unet.train()
    text_encoder.train()
    parameters = [*unet.parameters(), *text_encoder.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=1e-2)
    scheduler = _warmup(optimizer, settings.steps, settings.warmup_steps, settings.steps)
    total = noise_scheduler.config.num_train_timesteps
    started = time.perf_counter()
    metrics: dict[str, float] = {}
    running = None
    for step in range(settings.steps):
        # The global batch is drawn in full on every process, then each takes its slice.
        index = torch.randint(0, len(latents), (settings.batch_size,), generator=generator)
        ids = input_ids[index].clone()
        dropped = torch.rand(settings.batch_size, generator=generator) < settings.uncond_rate
        ids[dropped] = empty_ids
        noise = torch.randn((settings.batch_size, *latents.shape[1:]), generator=generator)
        timesteps = torch.randint(0, total, (settings.batch_size,), generator=generator)
        index, ids, noise, timesteps = (shard.part(t) for t in (index, ids, noise, timesteps))
        noisy = noise_scheduler.add_noise(latents[index], noise, timesteps)
        states = text_encoder(ids)[0]
        prediction = unet(noisy, timesteps, encoder_hidden_states=states).sample
        loss = torch.nn.functional.mse_loss(prediction, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        value = shard.average(parameters, loss)
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        scheduler.step()
        running = value if running is None else 0.98 * running + 0.02 * value
        metrics = {"step": step + 1, "loss": value, "loss_ema": running}
        if report and (step + 1) % 100 == 0:
            report("text_to_image", {**metrics, "seconds": round(time.perf_counter() - started, 1)})
    shard.check_identical(parameters)
    unet.eval()
    text_encoder.eval()
    return metrics
