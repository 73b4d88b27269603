"""The GPU code paths that can be checked without a GPU: dtype choice per architecture,
host-to-device copies (pinned + non_blocking only on CUDA), the compile switch, the CPU
fallback of a replica configured for CUDA, configs/gpu.yaml and scripts/gpu_check.py.

Only the GPU itself is faked (``Tensor.pin_memory`` / ``Tensor.to`` towards "cuda");
everything else runs for real.
"""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from serving.config import AppConfig, ModelSpec
from serving.engines.torch_engine import FP16_UNSAFE, maybe_compile, select_dtype, to_device
from serving.load_settings import LoadSettings
from serving.runner import ModelRunner
from serving.tokenization import TextTokenizer

REPO = Path(__file__).resolve().parents[2]
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU fallback")


def _load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("requested", "model_type", "bf16", "expected"),
    [("auto", "bert", True, "float16"), ("auto", "t5", True, "bfloat16"),
     ("auto", "t5", False, "float32"), ("auto", "mt5", True, "bfloat16"),
     ("auto", None, False, "float16"), ("float32", "t5", True, "float32"),
     ("bfloat16", "bert", True, "bfloat16")],
)
def test_cuda_dtype_per_architecture(requested, model_type, bf16, expected, caplog):
    with caplog.at_level(logging.WARNING, logger="serving.engines.torch_engine"):
        assert select_dtype(requested, "cuda", model_type, bf16) == expected
    assert not caplog.records


@pytest.mark.parametrize("model_type", sorted(FP16_UNSAFE))
def test_auto_never_picks_float16_for_fp16_unsafe_architectures(model_type):
    for bf16 in (True, False):
        assert select_dtype("auto", "cuda", model_type, bf16) != "float16"
    assert select_dtype("auto", "cpu", model_type) == "float32"


def test_bfloat16_without_gpu_support_becomes_float32(caplog):
    with caplog.at_level(logging.WARNING, logger="serving.engines.torch_engine"):
        assert select_dtype("bfloat16", "cuda", "bert", bf16_supported=False) == "float32"
    assert "bfloat16" in caplog.text and "float32" in caplog.text


def test_explicit_float16_on_an_fp16_unsafe_model_is_kept_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="serving.engines.torch_engine"):
        assert select_dtype("float16", "cuda", "t5") == "float16"
    assert "t5" in caplog.text and "overflow" in caplog.text


def test_cpu_copies_share_memory_and_are_not_pinned():
    array = np.arange(12, dtype=np.int64).reshape(3, 4)
    tensor = to_device(array, "cpu")
    assert tensor.device.type == "cpu" and not tensor.is_pinned()
    assert tensor.data_ptr() == array.ctypes.data  # no copy
    np.testing.assert_array_equal(tensor.numpy(), array)


def test_cuda_copies_are_pinned_and_non_blocking(monkeypatch):
    """The GPU is faked: record what the copy asks of torch instead of copying."""
    calls = []

    def pin_memory(self):
        calls.append("pin_memory")
        return self

    def to(self, *args, **kwargs):
        calls.append(("to", args, kwargs))
        return self

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin_memory)
    monkeypatch.setattr(torch.Tensor, "to", to)
    to_device(np.zeros((2, 3), dtype=np.int64), "cuda")
    assert calls == ["pin_memory", ("to", ("cuda",), {"non_blocking": True})]
    calls.clear()
    to_device(np.zeros((2, 3), dtype=np.int64), "cpu")
    assert calls == []


def test_compile_wraps_only_for_cuda(caplog):
    model = torch.nn.Linear(4, 2)
    assert maybe_compile(model, "cuda", enabled=False) is model
    with caplog.at_level(logging.WARNING, logger="serving.engines.torch_engine"):
        assert maybe_compile(model, "cpu", enabled=True) is model
    assert "compile" in caplog.text and "CUDA only" in caplog.text
    compiled = maybe_compile(model, "cuda", enabled=True)  # lazy: nothing compiles yet
    assert compiled is not model and compiled._orig_mod is model


def test_compile_is_a_load_field():
    spec = ModelSpec(name="m", task="feature-extraction",
                     model="sentence-transformers/all-MiniLM-L6-v2", compile=True)
    assert "compile" in LoadSettings.model_fields and spec.load_settings().compile is True
    assert ModelSpec(name="m", task="feature-extraction", model=spec.model).compile is False


@NO_CUDA
def test_replica_configured_for_cuda_falls_back_to_cpu(model_dirs, caplog):
    directory = str(model_dirs["st"])
    gpu = ModelSpec(name="m", task="feature-extraction", model=directory, device="cuda",
                    dtype="float16", compile=True, num_gpus=0.25)
    with caplog.at_level(logging.WARNING, logger="serving.engines.torch_engine"):
        runner = ModelRunner.load(gpu.load_settings())
    messages = [r.getMessage() for r in caplog.records if r.name == "serving.engines.torch_engine"]
    assert any("'cuda' requested but no CUDA device" in m for m in messages)
    assert any("float16" in m and "float32" in m for m in messages)
    assert any("compile" in m for m in messages)
    assert runner.device == "cpu"
    assert runner.model is not None and next(runner.model.parameters()).dtype == torch.float32
    reference = ModelRunner.load(
        ModelSpec(name="m", task="feature-extraction", model=directory).load_settings())
    encoded = TextTokenizer.load(directory).encode(["a short text", "a somewhat longer text"])
    for ours, theirs in zip(runner.run([encoded])[0], reference.run([encoded])[0], strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)


def test_gpu_profile():
    document = yaml.safe_load((REPO / "configs" / "gpu.yaml").read_text())
    (application,) = document["applications"]
    config = AppConfig.model_validate(application["args"])
    assert len(config.models) >= 2  # several models share one GPU
    for spec in config.models:
        assert 0 < spec.num_gpus < 1, spec.name
        assert spec.device == "cuda" and spec.dtype != "float32"


def test_gpu_check_keeps_only_offline_models():
    script = _load_script()
    document = yaml.safe_load((REPO / "configs" / "gpu.yaml").read_text())
    offline = script.offline_config(document)
    names = [m["name"] for m in offline["applications"][0]["args"]["models"]]
    assert names == ["minilm"]  # the sentiment model needs the Hub
    assert AppConfig.model_validate(offline["applications"][0]["args"])
    assert len(document["applications"][0]["args"]["models"]) > 1  # the input is untouched


@NO_CUDA
def test_gpu_check_skips_without_cuda():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check.py")],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 77, result.stderr
    assert "no CUDA device" in result.stderr
