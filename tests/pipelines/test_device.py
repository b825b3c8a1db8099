import pytest
import torch

from generation.pipelines import select_device


def test_select_device_prefers_cpu_when_asked():
    assert select_device("cpu") == ("cpu", torch.float32)


def test_select_device_picks_cuda_float16_only_when_available():
    expected = ("cuda", torch.float16) if torch.cuda.is_available() else ("cpu", torch.float32)

    assert select_device() == expected


def test_select_device_rejects_unknown_device():
    with pytest.raises(ValueError) as excinfo:
        select_device("tpu")

    assert str(excinfo.value) == "`preferred` has to be None, 'cpu' or 'cuda' but is 'tpu'."


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_select_device_fails_loudly_when_cuda_is_missing():
    with pytest.raises(ValueError) as excinfo:
        select_device("cuda")

    assert str(excinfo.value) == "`preferred` is 'cuda' but CUDA is not available."
