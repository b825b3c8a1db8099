"""Training a text-to-sticker model from scratch: an RGBA VAE, then a text encoder and UNet.

The finetuning recipes (``loop``) start from an existing model; these two stages make the model
they start from. Both run on in-memory arrays, on one CPU thread if asked, and are
deterministic for a given seed (``torch.use_deterministic_algorithms``), so the default models
can be rebuilt bit for bit.
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
    images: np.ndarray, vae: Any, settings: VaeSettings, *, report: Report | None = None
) -> dict[str, float]:
    """Train ``vae`` (an AutoencoderKL with 4 channels in and out) to reconstruct ``images``.

    ``images`` are uint8 RGBA arrays (N, H, W, 4). Loss: mean squared error on all four channels
    and L1, plus a small KL term. Returns the final metrics.
    """
    generator = torch.Generator().manual_seed(settings.seed)
    vae.train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=settings.learning_rate, weight_decay=0.0)
    scheduler = _warmup(optimizer, settings.steps, min(100, settings.steps // 10), settings.steps)
    started = time.perf_counter()
    metrics: dict[str, float] = {}
    for step in range(settings.steps):
        index = torch.randint(0, len(images), (settings.batch_size,), generator=generator)
        batch = _to_tensor(images[index.numpy()])
        posterior = vae.encode(batch).latent_dist
        # A sample, not the mean: the decoder must stay right when the UNet's latents are a
        # little off.
        latents = posterior.mean + posterior.std * torch.randn(
            posterior.mean.shape, generator=generator
        )
        recon = vae.decode(latents).sample
        mse = torch.nn.functional.mse_loss(recon, batch)
        l1 = torch.nn.functional.l1_loss(recon, batch)
        kl = posterior.kl().mean()
        loss = mse + settings.l1_weight * l1 + settings.kl_weight * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        metrics = {"step": step + 1, "mse": mse.item(), "kl": kl.item()}
        if report and (step + 1) % 50 == 0:
            report("vae", {**metrics, "seconds": round(time.perf_counter() - started, 1)})
    vae.eval()
    return metrics


@torch.no_grad()
def encode_latents(images: np.ndarray, vae: Any, *, batch_size: int = 256) -> torch.Tensor:
    """The posterior means of ``images`` (unscaled), in order."""
    chunks = []
    for start in range(0, len(images), batch_size):
        batch = _to_tensor(images[start : start + batch_size])
        chunks.append(vae.encode(batch).latent_dist.mean)
    return torch.cat(chunks)


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
        index = torch.randint(0, len(latents), (settings.batch_size,), generator=generator)
        clean = latents[index]
        ids = input_ids[index].clone()
        dropped = torch.rand(settings.batch_size, generator=generator) < settings.uncond_rate
        ids[dropped] = empty_ids
        noise = torch.randn(clean.shape, generator=generator)
        timesteps = torch.randint(0, total, (settings.batch_size,), generator=generator)
        noisy = noise_scheduler.add_noise(clean, noise, timesteps)
        states = text_encoder(ids)[0]
        prediction = unet(noisy, timesteps, encoder_hidden_states=states).sample
        loss = torch.nn.functional.mse_loss(prediction, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        scheduler.step()
        value = loss.item()
        running = value if running is None else 0.98 * running + 0.02 * value
        metrics = {"step": step + 1, "loss": value, "loss_ema": running}
        if report and (step + 1) % 100 == 0:
            report("text_to_image", {**metrics, "seconds": round(time.perf_counter() - started, 1)})
    unet.eval()
    text_encoder.eval()
    return metrics
