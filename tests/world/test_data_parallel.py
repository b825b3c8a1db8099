"""The base's data-parallel training (``pretrain.Shard``), in two real gloo processes.

Two processes (training the base's VAE, or the animation models' RGB VAE) must end with the
same weights as each other on every run (the build's bit-for-bit promise), and their averaged
gradient must be the full batch's gradient.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from training_bridge.recipes.pretrain import Shard

WORKER = textwrap.dedent(
    """
    import hashlib, json, sys
    import torch
    import torch.distributed as dist
    from diffusers import AutoencoderKL
    from generation.pipelines.tiny import rgb_vae_from_rgba
    from training_bridge.recipes.pretrain import (
        CompositeVaeSettings, Shard, VaeSettings, train_composite_vae, train_vae,
    )

    mode, rank, size, rendezvous, out = sys.argv[1:6]
    rank, size = int(rank), int(size)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    if size > 1:
        dist.init_process_group(
            "gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=size
        )
    shard = Shard(rank, size)
    torch.manual_seed(0)
    if mode == "gradient":
        model = torch.nn.Linear(6, 3)
        inputs = torch.randn(8, 6, generator=torch.Generator().manual_seed(1))
        loss = model(shard.part(inputs)).square().mean()
        loss.backward()
        value = shard.average(list(model.parameters()), loss)
        result = {"loss": value, "grads": [p.grad.flatten().tolist() for p in model.parameters()]}
    else:
        vae = AutoencoderKL(
            block_out_channels=(8, 8), norm_num_groups=4, latent_channels=4, in_channels=4,
            out_channels=4, down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2, sample_size=16,
        )
        images = torch.randint(0, 256, (16, 16, 16, 4), generator=torch.Generator().manual_seed(2))
        images = images.to(torch.uint8).numpy()
        if mode == "vae":
            metrics = train_vae(images, vae, VaeSettings(steps=3, batch_size=4), shard=shard)
        else:
            rgba_vae, vae = vae, rgb_vae_from_rgba(vae)
            settings = CompositeVaeSettings(steps=3, batch_size=4)
            metrics = train_composite_vae(images, rgba_vae, vae, settings, shard=shard)
        digest = hashlib.sha256()
        for tensor in vae.state_dict().values():
            digest.update(tensor.numpy().tobytes())
        result = {"loss": metrics["loss"], "sha256": digest.hexdigest()}
    with open(f"{out}.{rank}", "w") as handle:
        json.dump(result, handle)
    if size > 1:
        dist.destroy_process_group()
    """
)


def run(tmp_path, mode: str, size: int, name: str) -> list[dict]:
    out = tmp_path / name
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    args = [mode, None, str(size), str(tmp_path / f"{name}.rendezvous"), str(out)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, *[str(rank) if a is None else a for a in args]],
            env=env,
        )
        for rank in range(size)
    ]
    assert [p.wait(timeout=120) for p in processes] == [0] * size
    return [json.loads((tmp_path / f"{name}.{rank}").read_text()) for rank in range(size)]


def test_two_processes_average_to_the_full_batch_gradient(tmp_path):
    (whole,) = run(tmp_path, "gradient", 1, "whole")
    halves = run(tmp_path, "gradient", 2, "halves")

    assert halves[0] == halves[1]
    assert halves[0]["loss"] == pytest.approx(whole["loss"], rel=1e-6)
    for split, full in zip(halves[0]["grads"], whole["grads"], strict=True):
        assert torch.allclose(torch.tensor(split), torch.tensor(full), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("mode", ["vae", "composite"])
def test_two_process_training_gives_the_same_bytes_every_run(tmp_path, mode):
    first = run(tmp_path, mode, 2, "first")
    second = run(tmp_path, mode, 2, "second")

    assert first[0] == first[1] == second[0] == second[1]
    assert len(first[0]["sha256"]) == 64


def test_one_process_shard_is_the_whole_batch():
    batch = torch.arange(8)

    assert torch.equal(Shard().part(batch), batch)
    assert Shard(1, 2).part(batch).tolist() == [4, 5, 6, 7]
