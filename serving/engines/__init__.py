"""The engines that run a model's forward passes, by the name a config gives them.

Adding an engine (OpenVINO, a GPU runtime) is one module implementing
:class:`serving.engines.base.Engine` plus one line here; ``LoadSettings.engine`` is
validated against this registry, and each engine says what it can serve
(:meth:`Engine.refusal`).
"""

from __future__ import annotations

from serving.engines.base import Engine
from serving.engines.onnx_engine import OnnxEngine
from serving.engines.openvino_engine import OpenVinoEngine
from serving.engines.torch_engine import TorchEngine

ENGINES: dict[str, type[Engine]] = {
    engine.name: engine for engine in (TorchEngine, OnnxEngine, OpenVinoEngine)}

__all__ = ["ENGINES", "Engine", "OnnxEngine", "OpenVinoEngine", "TorchEngine"]
