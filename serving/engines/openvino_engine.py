"""OpenVINO as the forward engine of encoder models on the CPU (``engine: openvino``).

The same path as ``engine: onnx`` (:mod:`serving.engines.onnx_engine`): when a replica
loads, the PyTorch model is exported with torch's ONNX exporter, checked against PyTorch on
fresh inputs, and its small passes run in OpenVINO's CPU runtime instead of ONNX Runtime;
passes above ``torch_above_tokens`` padded tokens, the health check and anything the export
cannot serve stay in PyTorch. Inference precision is pinned to float32: on CPUs with
bfloat16 units OpenVINO would otherwise pick bfloat16 and the answers would move.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from serving.engines.onnx_engine import OnnxEngine


def openvino_config(threads: int) -> dict[str, Any]:
    """How a model is compiled for OpenVINO's CPU runtime: ``threads`` threads, one stream,
    float32 (on CPUs with bfloat16 units it would pick bfloat16 and answers would move), and
    threads not pinned to cores: pinned, two single-threaded processes on a 2-core machine
    pinned theirs to the same core (MiniLM, batch 1: 288 texts/s together, 532 unpinned)."""
    return {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32", "ENABLE_CPU_PINNING": False}


class _Session:
    """A compiled OpenVINO model behind ONNX Runtime's ``run(output names, feed)``."""

    def __init__(self, compiled: Any) -> None:
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        # A port may carry several names (an output that is also an intermediate value).
        self._outputs = {name: port for port in compiled.outputs for name in port.get_names()}

    def run(self, outputs: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        results = self._request.infer(feed)
        # Copies: the request's output buffers are reused by its next pass.
        return [np.array(results[self._outputs[name]]) for name in outputs]


class OpenVinoEngine(OnnxEngine):
    """Small passes in OpenVINO, bigger ones (and the health check's weights) in PyTorch."""

    name = "openvino"
    runtime = "OpenVINO"

    @staticmethod
    def session(onnx_bytes: bytes, threads: int) -> Any:
        import openvino

        core = openvino.Core()
        model = core.read_model(io.BytesIO(onnx_bytes))
        return _Session(core.compile_model(model, "CPU", openvino_config(threads)))
