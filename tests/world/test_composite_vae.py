"""The animation models' RGB VAE: ``pretrain.train_composite_vae`` and the build's use of it."""

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from generation.pipelines.tiny import rgb_vae_from_rgba
from training_bridge.recipes.pretrain import (
    CompositeVaeSettings,
    composite_over_white,
    train_composite_vae,
)


def small_rgba_vae() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=(8, 8),
        norm_num_groups=4,
        latent_channels=4,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        sample_size=16,
    )


def stickers(count: int) -> np.ndarray:
    """Coloured squares on a transparent background, at random places."""
    rng = np.random.default_rng(3)
    images = np.zeros((count, 16, 16, 4), dtype=np.uint8)
    for image in images:
        top, left = rng.integers(0, 8, size=2)
        image[top : top + 8, left : left + 8] = [*rng.integers(0, 256, size=3), 255]
    return images


def losses(rgba_vae, rgb_vae, images: np.ndarray) -> tuple[float, float]:
    """(encoder error against the RGBA means, decoder error against the composites)."""
    with torch.no_grad():
        rgba = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        composites = torch.from_numpy(composite_over_white(images)).permute(0, 3, 1, 2)
        composites = composites.div(127.5).sub(1.0)
        target = rgba_vae.encode(rgba).latent_dist.mean
        encoded = rgb_vae.encode(composites).latent_dist.mean
        drawn = rgb_vae.decode(target).sample
    return (
        torch.nn.functional.mse_loss(encoded, target).item(),
        torch.nn.functional.mse_loss(drawn, composites).item(),
    )


def test_composite_over_white_puts_each_pixel_over_white():
    images = np.array([[[[10, 20, 30, 0], [10, 20, 30, 255], [100, 0, 200, 51]]]], dtype=np.uint8)

    composite = composite_over_white(images)

    assert composite.shape == (1, 1, 3, 3)
    assert composite[0, 0].tolist() == [
        [255.0, 255.0, 255.0],
        [10.0, 20.0, 30.0],
        pytest.approx([224.0, 204.0, 244.0], abs=1e-4),
    ]


def test_training_brings_the_rgb_vae_into_the_rgba_latent_space():
    images = stickers(32)
    rgba_vae = small_rgba_vae()
    rgb_vae = rgb_vae_from_rgba(rgba_vae)
    folded = losses(rgba_vae, rgb_vae, images)

    torch.manual_seed(0)
    metrics = train_composite_vae(
        images, rgba_vae, rgb_vae, CompositeVaeSettings(steps=60, batch_size=8)
    )
    trained = losses(rgba_vae, rgb_vae, images)

    assert metrics["step"] == 60
    assert not rgb_vae.training
    # The RGBA VAE is the fixed target: untouched.
    assert all(not p.requires_grad for p in rgba_vae.parameters())
    assert trained[0] < folded[0] / 4
    assert trained[1] < folded[1] / 4
