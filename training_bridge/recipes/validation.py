"""The validation loss of the UNet being trained, on the datasets' validation split."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .data import ExportedDataset
from .encoding import BatchEncoder
from .spec import STYLE_TAILORING, ModelFacts


@torch.no_grad()
def validation_loss(
    unet,
    encoder: BatchEncoder,
    noise_scheduler,
    validation: dict[str, ExportedDataset],
    *,
    roles: list[str],
    recipe: str,
    model_facts: ModelFacts,
    params: dict[str, Any],
    autocast: Callable[[], AbstractContextManager],
) -> dict[str, float]:
    """Mean loss per role on up to ``validation_samples`` validation entries, at fixed,
    evenly spread timesteps of the role's range and seeded noise: comparable across runs.

    ``unet`` is the unwrapped model; ``autocast`` the accelerator's mixed-precision context.
    """
    limit = params["validation_samples"]
    if not limit:
        return {}
    unet.eval()
    out = {}
    generator = torch.Generator()
    for role in roles:
        entries = validation[role].entries[:limit]
        if not entries:
            continue
        low, high = 0, model_facts.num_train_timesteps
        if recipe == STYLE_TAILORING:
            split = params["timestep_split"]
            low, high = (split, high) if role == "content" else (0, split)
            if low == high:
                continue
        count = len(entries)
        timesteps = torch.tensor(
            [low + int((i + 0.5) * (high - low) / count) for i in range(count)]
        ).to(encoder.device)
        generator.manual_seed(params["seed"])
        pixels = torch.from_numpy(np.stack([encoder.pixels(e) for e in entries]))
        latents = encoder.encode_latents(pixels, generator)
        text = encoder.encode_text(
            [e.text for e in entries], params["num_frames"] if encoder.is_animation else 1
        )
        noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        if model_facts.prediction_type == "epsilon":
            target = noise
        else:
            target = noise_scheduler.get_velocity(latents, noise, timesteps)
        with autocast():
            prediction = unet(noisy, timesteps, encoder_hidden_states=text, return_dict=False)[0]
        out[role] = float(F.mse_loss(prediction.float(), target.float()))
    unet.train()
    return out
