"""Choice of the torch device and dtype that a worker process runs its pipelines on."""

from __future__ import annotations

import torch

_DEVICES = ("cpu", "cuda")


def select_device(preferred: str | None = None) -> tuple[str, torch.dtype]:
    """Return ``(device, dtype)`` for running pipelines in this process.

    Without a preference: ``("cuda", torch.float16)`` when CUDA is available, else
    ``("cpu", torch.float32)``. float16 halves GPU memory and is what SD-family weights are
    published in; on CPU float16 kernels are slow or missing, so CPU always gets float32.

    ``preferred`` ("cpu" or "cuda") overrides the automatic choice. Asking for "cuda" on a
    machine without CUDA raises instead of silently falling back, so a misconfigured GPU
    worker fails at start-up rather than running a thousand times slower.

    Raises:
        ValueError: ``preferred`` is not None, "cpu" or "cuda", or is "cuda" without CUDA.
    """
    if preferred is not None and preferred not in _DEVICES:
        raise ValueError(f"`preferred` has to be None, 'cpu' or 'cuda' but is {preferred!r}.")
    if preferred == "cpu":
        return "cpu", torch.float32
    if torch.cuda.is_available():
        return "cuda", torch.float16
    if preferred == "cuda":
        raise ValueError("`preferred` is 'cuda' but CUDA is not available.")
    return "cpu", torch.float32
