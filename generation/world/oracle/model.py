"""The oracle networks, their heads (factor value order), and how images become their input.

A rater sees a sticker on a page, so transparency is part of what is judged: each image goes in
as four channels, its colours composited over a fixed mid grey plus its alpha channel. A clip
goes in as its eight encoded frames stacked along the channel axis (32 channels).

``StickerNet`` judges images: four 3x3 convolution blocks (batch norm, ReLU, 2x2 max pool),
64 → 4 pixels, then the flattened 4x4 map (which keeps where the subject sits, for placement
and cropping) into one hidden layer and one linear head per factor. ``ClipNet`` judges clips:
a shared per-frame encoder, then a small network across time (see its docstring).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn

from .. import factors

NONE = "none"  # the expression of a subject without a face
GREY = 128  # what transparent pixels are composited over

IMAGE_HEADS: dict[str, tuple[str, ...]] = {
    "subject": factors.SUBJECT_NAMES,
    "colour": factors.COLOUR_NAMES,
    "expression": (*factors.EXPRESSION_NAMES, NONE),
    **factors.STYLE_PARTS,
}
CLIP_HEADS: dict[str, tuple[str, ...]] = {
    "motion": (*factors.MOTION_NAMES, factors.STILL),
    "smoothness": factors.SMOOTHNESS,
}
IMAGE_CHANNELS = 4
CLIP_CHANNELS = IMAGE_CHANNELS * factors.FRAMES
IMAGE_WIDTHS = (16, 32, 64, 96)
CLIP_WIDTHS = (16, 32, 48, 64)
HIDDEN = 128
# The image oracle's last maps (96 channels, 4x4), which the animation oracle reads per frame.
SEEN = IMAGE_WIDTHS[-1] * (factors.SIZE >> len(IMAGE_WIDTHS)) ** 2


def encode_image(image: Image.Image) -> np.ndarray:
    """(4, 64, 64) uint8: RGB over grey, then alpha. Any mode and size is accepted: the image is
    converted to RGBA (an image without alpha counts as opaque) and resized to 64x64 with
    Lanczos on premultiplied alpha, as the renderer downsamples."""
    if image.mode != "RGBA":
        image = image.convert("RGBA")
    if image.size != (factors.SIZE, factors.SIZE):
        image = (
            image.convert("RGBa")
            .resize((factors.SIZE, factors.SIZE), Image.Resampling.LANCZOS)
            .convert("RGBA")
        )
    pixels = np.asarray(image, dtype=np.uint16)
    alpha = pixels[..., 3:]
    rgb = (pixels[..., :3] * alpha + GREY * (255 - alpha) + 127) // 255
    return np.concatenate([rgb, alpha], axis=2).astype(np.uint8).transpose(2, 0, 1)


def encode_clip(frames: list[Image.Image]) -> np.ndarray:
    """(32, 64, 64) uint8: the encoded frames, in order, stacked along the channel axis."""
    if len(frames) != factors.FRAMES:
        raise ValueError(f"a clip has to have {factors.FRAMES} frames but has {len(frames)}.")
    return np.concatenate([encode_image(frame) for frame in frames], axis=0)


def to_input(batch: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, 64, 64) → float32 in [-0.5, 0.5]."""
    return torch.as_tensor(batch).float().div_(255).sub_(0.5)


def _block(inputs: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, 3, padding=1, bias=False),
        nn.BatchNorm2d(outputs),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class StickerNet(nn.Module):
    """A small CNN with one linear head per factor; ``forward`` returns logits by head name."""

    def __init__(
        self,
        *,
        channels: int,
        widths: tuple[int, ...],
        heads: dict[str, tuple[str, ...]],
    ) -> None:
        super().__init__()
        blocks, previous = [], channels
        for width in widths:
            blocks.append(_block(previous, width))
            previous = width
        self.trunk = nn.Sequential(*blocks)
        side = factors.SIZE >> len(widths)
        self.hidden = nn.Sequential(
            nn.Flatten(), nn.Linear(previous * side * side, HIDDEN), nn.ReLU(inplace=True)
        )
        self.head_names = tuple(heads)
        self.heads = nn.ModuleDict(
            {name: nn.Linear(HIDDEN, len(values)) for name, values in heads.items()}
        )

    def maps(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's last feature maps, flattened (N, SEEN): what the hidden layer reads."""
        return self.trunk(x).flatten(1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.hidden(self.trunk(x))
        return {name: self.heads[name](features) for name in self.head_names}


def image_net() -> StickerNet:
    return StickerNet(channels=IMAGE_CHANNELS, widths=IMAGE_WIDTHS, heads=IMAGE_HEADS)


def _layer(inputs: int, outputs: int, kernel: int, stride: int) -> list[nn.Module]:
    conv = nn.Conv2d(inputs, outputs, kernel, stride=stride, padding=(kernel - 1) // 2, bias=False)
    return [conv, nn.BatchNorm2d(outputs), nn.ReLU(inplace=True)]


class ClipNet(nn.Module):
    """Each frame through a shared encoder to a vector, then a small network across time.

    A frame goes in with how it differs from the clip's mean frame (what moves stands out even
    where it is small). Two 2x2 convolutions of stride 2 and a 3x3 one of stride 2 bring it to
    8x8 (3x3 convolutions at full size cost several times as much on one core); two coordinate
    channels join before the last 3x3 convolution, and the maps are pooled over space (mean and
    max). Pooling makes the vector blind to the jitter of a jerky clip except through the
    coordinates. Beside it goes what the (frozen) image oracle sees in the frame, its last
    feature maps through one linear layer: the image oracle reads small details such as the
    shape of the eyes at full size, which a blink changes, and where parts of the subject are,
    which a tilt changes. Across time, two circular 1D convolutions (a clip is a loop) compare
    neighbouring frames; their mean and max over time feed one linear head per factor."""

    def __init__(self, *, heads: dict[str, tuple[str, ...]]) -> None:
        super().__init__()
        first, second, third, width = CLIP_WIDTHS
        self.frame_encoder = nn.Sequential(
            *_layer(2 * IMAGE_CHANNELS, first, 2, 2),
            *_layer(first, second, 2, 2),
            *_layer(second, third, 3, 2),
        )
        self.located = nn.Sequential(*_layer(third + 2, width, 3, 1))
        self.seen = nn.Sequential(nn.Linear(SEEN, HIDDEN), nn.ReLU(inplace=True))
        self.temporal = nn.Sequential(
            nn.Conv1d(
                2 * width + HIDDEN, HIDDEN, 3, padding=1, padding_mode="circular", bias=False
            ),
            nn.BatchNorm1d(HIDDEN),
            nn.ReLU(inplace=True),
            nn.Conv1d(HIDDEN, HIDDEN, 3, padding=1, padding_mode="circular", bias=False),
            nn.BatchNorm1d(HIDDEN),
            nn.ReLU(inplace=True),
        )
        side = factors.SIZE // 8
        ramp = torch.linspace(-1, 1, side)
        coords = torch.stack([ramp[None, :].expand(side, -1), ramp[:, None].expand(-1, side)])
        self.register_buffer("coords", coords[None], persistent=False)
        self.head_names = tuple(heads)
        self.heads = nn.ModuleDict(
            {name: nn.Linear(2 * HIDDEN, len(values)) for name, values in heads.items()}
        )

    def forward(self, x: torch.Tensor, seen: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x``: clips (N, 32, 64, 64); ``seen``: the image oracle's ``maps`` of each frame
        (N, 8, SEEN), see ``frame_features``."""
        n, _, height, width = x.shape
        frames = x.reshape(n, factors.FRAMES, IMAGE_CHANNELS, height, width)
        change = frames - frames.mean(dim=1, keepdim=True)
        frames = torch.cat([frames, change], dim=2).reshape(n * factors.FRAMES, -1, height, width)
        maps = self.frame_encoder(frames)
        coords = self.coords.expand(len(maps), -1, -1, -1)
        maps = self.located(torch.cat([maps, coords], dim=1))
        vectors = torch.cat([maps.mean(dim=(2, 3)), maps.amax(dim=(2, 3))], dim=1)
        vectors = torch.cat([vectors.view(n, factors.FRAMES, -1), self.seen(seen)], dim=2)
        over_time = self.temporal(vectors.transpose(1, 2))
        features = torch.cat([over_time.mean(dim=2), over_time.amax(dim=2)], dim=1)
        return {name: self.heads[name](features) for name in self.head_names}


def frame_features(image: StickerNet, clips: torch.Tensor) -> torch.Tensor:
    """The image oracle's ``maps`` of every frame of float clips (N, 32, 64, 64), as
    (N, 8, SEEN): what ``ClipNet`` gets as ``seen``."""
    frames = clips.reshape(-1, IMAGE_CHANNELS, factors.SIZE, factors.SIZE)
    return image.maps(frames).view(len(clips), factors.FRAMES, SEEN)


def clip_net() -> ClipNet:
    return ClipNet(heads=CLIP_HEADS)
