"""Turning dataset entries into the UNet's inputs: decoded pixels, text states and latents."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .data import load_frames, load_pixels

# Decoded training images are kept in memory up to this size: the tiny datasets fit entirely,
# a real one streams from disk.
PIXEL_CACHE_BYTES = 256 * 1024 * 1024


class BatchEncoder:
    """Pixels of dataset entries (cached up to PIXEL_CACHE_BYTES), their captions through the
    frozen text encoder and their pixels through the frozen VAE, on ``device``."""

    def __init__(
        self,
        *,
        vae,
        text_encoder,
        tokenizer,
        device: torch.device,
        weight_dtype: torch.dtype,
        is_animation: bool,
        resolution: int,
        num_frames: int | None,
    ) -> None:
        self.vae = vae
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.device = device
        self.weight_dtype = weight_dtype
        self.is_animation = is_animation
        self.resolution = resolution
        self.num_frames = num_frames
        self.vae_channels = vae.config.in_channels
        self._pixel_cache: dict[Path, np.ndarray] = {}
        self._pixel_cache_bytes = 0

    def pixels(self, entry) -> np.ndarray:
        cached = self._pixel_cache.get(entry.file)
        if cached is not None:
            return cached
        resolution = self.resolution
        if self.is_animation:
            array = load_frames(
                entry,
                resolution=resolution,
                num_frames=self.num_frames,
                channels=self.vae_channels,
            )
        else:
            array = load_pixels(entry.file, resolution=resolution, channels=self.vae_channels)
        if self._pixel_cache_bytes + array.nbytes <= PIXEL_CACHE_BYTES:
            self._pixel_cache[entry.file] = array
            self._pixel_cache_bytes += array.nbytes
        return array

    def encode_text(self, captions: list[str], repeat: int) -> torch.Tensor:
        ids = self.tokenizer(
            captions,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.device)
        states = self.text_encoder(ids, return_dict=False)[0]
        if repeat > 1:
            # AnimateDiff's UNet takes one text state per frame, as its pipelines pass it.
            states = states.repeat_interleave(repeat, dim=0)
        return states

    def encode_latents(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        device = self.device
        scaling = self.vae.config.scaling_factor
        if not self.is_animation:
            dist = self.vae.encode(pixels.to(device, dtype=self.weight_dtype)).latent_dist
            return dist.sample(generator=generator) * scaling
        batch, frames = pixels.shape[:2]
        flat = pixels.reshape(batch * frames, *pixels.shape[2:]).to(device, dtype=self.weight_dtype)
        latents = self.vae.encode(flat).latent_dist.sample(generator=generator) * scaling
        # contiguous(): backward through UNetMotionModel from these permuted latents segfaults
        # in torch 2.13's CPU kernels (measured); a contiguous copy costs nothing noticeable.
        return (
            latents.reshape(batch, frames, *latents.shape[1:]).permute(0, 2, 1, 3, 4).contiguous()
        )
