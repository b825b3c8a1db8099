"""Train the oracle judges from renderer ground truth (stream ``oracle`` only) and write them.

    python -m generation.world.oracle.train [--out FOLDER] [--images N] [--clips N] [--epochs E]

The image oracle trains first. The animation oracle then trains with it frozen: per frame it
reads the image oracle's last feature maps beside its own, computed once for every clip (as
rendered and mirrored). Every image and clip is rendered once and seen ``--epochs`` times under
fresh augmentation. Deterministic: one thread, deterministic algorithms and fixed seeds, so the
same sources give the same weights. With the defaults it takes 10 to 15 minutes on one core of
the 2-core machine, depending on what else runs there (rendering takes about 2.3 ms an image
and 9 ms a clip); it prints its progress and time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from .. import factors
from . import data, store
from .model import clip_net, frame_features, image_net, to_input

STREAM = "oracle"
SEED = 0
BATCH = 64
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-4


def seen_frames(image: nn.Module, inputs: np.ndarray) -> torch.Tensor:
    """What the trained image oracle sees in every frame of every clip, as rendered and
    mirrored: (N, 2, 8, SEEN). Computed once, since the image oracle stays frozen."""
    out = []
    with torch.no_grad():
        for start in range(0, len(inputs), BATCH):
            x = to_input(inputs[start : start + BATCH])
            out.append(torch.stack([frame_features(image, x), frame_features(image, x.flip(3))], 1))
    return torch.cat(out)


def fit(
    net: nn.Module,
    labelled: data.Labelled,
    *,
    epochs: int,
    frames: int,
    seed: int,
    log,
    seen: torch.Tensor | None = None,
) -> nn.Module:
    """Train ``net`` on ``labelled`` for ``epochs`` epochs of shuffled, augmented batches of
    ``BATCH`` (the last partial batch of an epoch is dropped); the summed cross-entropy of every
    head, AdamW with a one-cycle learning rate. A clip network also gets ``seen`` (see
    ``seen_frames``), mirrored and reversed with its clips."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.from_numpy(labelled.inputs)
    labels = {head: torch.from_numpy(values) for head, values in labelled.labels.items()}
    per_epoch = len(inputs) // BATCH
    optimiser = torch.optim.AdamW(net.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=LEARNING_RATE, total_steps=max(1, epochs * per_epoch), pct_start=0.15
    )
    net.train()
    for epoch in range(epochs):
        order = torch.randperm(len(inputs), generator=generator)
        total = 0.0
        for step in range(per_epoch):
            batch = order[step * BATCH : (step + 1) * BATCH]
            x, flips = data.augmented_input(inputs[batch], generator, frames=frames)
            if seen is None:
                logits = net(x)
            else:
                sees = seen[batch, 0]
                sees[flips.mirrored] = seen[batch[flips.mirrored], 1]
                sees[flips.reversed] = sees[flips.reversed].flip(1)
                logits = net(x, sees)
            loss = sum(
                functional.cross_entropy(logits[head], labels[head][batch]) for head in logits
            )
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item()
        log(f"  epoch {epoch + 1}/{epochs}: loss {total / max(1, per_epoch):.4f}")
    return net.eval()


def train(*, out: Path, images: int, clips: int, epochs: int, log=print) -> dict:
    """Render, train both oracles and write them to ``out``; return the training record."""
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    # Deterministic mode also fills every new tensor with NaN (a fifth of a training step here);
    # no operation used reads memory before writing it, so the results are the same without.
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.set_num_threads(1)
    started = time.perf_counter()
    log(f"rendering {images} images from stream {STREAM!r}")
    image_data = data.image_set(STREAM, 0, images)
    log(f"training the image oracle ({time.perf_counter() - started:.0f} s)")
    torch.manual_seed(SEED)
    image = fit(image_net(), image_data, epochs=epochs, frames=1, seed=SEED, log=log)
    del image_data
    log(f"rendering {clips} clips from stream {STREAM!r} ({time.perf_counter() - started:.0f} s)")
    clip_data = data.clip_set(STREAM, 0, clips)
    seen = seen_frames(image, clip_data.inputs)
    log(f"training the animation oracle ({time.perf_counter() - started:.0f} s)")
    torch.manual_seed(SEED + 1)
    animation = fit(
        clip_net(),
        clip_data,
        epochs=epochs,
        frames=factors.FRAMES,
        seed=SEED + 1,
        log=log,
        seen=seen,
    )
    training = {
        "stream": STREAM,
        "images": images,
        "clips": clips,
        "epochs": epochs,
        "batch": BATCH,
        "seed": SEED,
        "torch": torch.__version__,
    }
    path = store.write(out, {"image": image, "animation": animation}, training)
    log(f"wrote {path} after {time.perf_counter() - started:.0f} s")
    return training


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"has to be at least 1 but is {value}")
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=store.DEFAULT_FOLDER)
    parser.add_argument("--images", type=_positive, default=10_000)
    parser.add_argument("--clips", type=_positive, default=5_000)
    parser.add_argument("--epochs", type=_positive, default=12)
    args = parser.parse_args(argv)
    if min(args.images, args.clips) < BATCH:
        parser.error(f"--images and --clips have to be at least one batch ({BATCH})")
    train(out=args.out, images=args.images, clips=args.clips, epochs=args.epochs)


if __name__ == "__main__":
    main()
