import pytest
import torch

from twn_rag.device import cpu_has_native_bf16, resolve_device, resolve_dtype


def test_auto_device_on_this_machine_is_cpu_without_accelerators():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type in (expected, "mps")
    assert resolve_device("cpu") == torch.device("cpu")


def test_auto_dtype_follows_cpu_bf16_support():
    expected = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    assert resolve_dtype("auto", torch.device("cpu")) == expected


@pytest.mark.parametrize(("name", "dtype"), [("float32", torch.float32), ("bfloat16", torch.bfloat16)])
def test_named_and_torch_dtypes(name, dtype):
    assert resolve_dtype(name) == dtype
    assert resolve_dtype(dtype) == dtype


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("float8")
