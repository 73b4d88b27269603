"""ONNX Runtime as the forward engine of encoder models on the CPU (``engine: onnx``).

When a replica loads, the PyTorch model is exported with torch's own ONNX exporter, checked
against the PyTorch forward on fresh inputs, and run by ONNX Runtime. What it saves is
mostly the fixed cost of a pass (PyTorch's per-module overhead). MiniLM, one thread, on
the 2-core machines this project is measured on: one text of 10 tokens 3.3 ms in ONNX
Runtime against 6.9 in PyTorch, 32 short texts 47 against 117 ms, 32 texts of ~120 tokens
568 against 1029 ms, 32 x 512 tokens 3.8 against 5.0 s. (An earlier machine measured
PyTorch ahead above ~1000 padded tokens, so passes above :data:`TORCH_ABOVE_TOKENS` can
still be sent to PyTorch; it is now above any pass ``max_batch_size`` 32 makes.) The
answers are the same to ~1e-6.

Anything that goes wrong (an architecture the exporter cannot trace, outputs that do not
match) keeps the PyTorch model, with a warning: this is a speed option, never a reason for
a replica not to serve.
"""

from __future__ import annotations

import copy
import inspect
import io
import logging
import warnings
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.engines.torch_engine import TorchEngine

if TYPE_CHECKING:
    from serving.load_settings import LoadSettings
    from serving.tasks import Task

logger = logging.getLogger(__name__)

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Passes with more padded tokens (rows x width) than this run in PyTorch (see above).
TORCH_ABOVE_TOKENS = 1 << 16
# Exported outputs must match PyTorch's to this, relative to the largest output value.
TOLERANCE = 1e-4
# Odd sizes for the export's sample batch, so no other dimension is mistaken for them.
_SAMPLE_ROWS, _SAMPLE_WIDTH = 3, 11


class OnnxEngine(TorchEngine):
    """Small passes in ONNX Runtime, bigger ones (and the health check's weights) in the
    PyTorch model it was exported from."""

    name = "onnx"
    runtime = "ONNX Runtime"  # what runs the exported graph (for messages)
    quantizes = False  # the export runs the float model

    def __init__(self, torch_engine: TorchEngine, session: Any, inputs: list[str],
                 outputs: list[str], torch_above_tokens: int = TORCH_ABOVE_TOKENS) -> None:
        super().__init__(torch_engine.model, torch_engine.device, torch_engine.dtype)
        self._session = session
        self._inputs = inputs
        self._outputs = outputs
        self.torch_above_tokens = torch_above_tokens

    @classmethod
    def refusal(cls, task: type[Task], device: str) -> str | None:
        if task.generates:
            return f"it runs encoder tasks; {task.name} generates text"
        if device not in ("auto", "cpu"):
            return f"{cls.runtime} runs on the CPU only, not {device}"
        return None

    @classmethod
    def load(cls, settings: LoadSettings) -> TorchEngine:
        import torch

        return accelerate(TorchEngine.load(settings), torch.get_num_threads(), kind=cls)

    @staticmethod
    def session(onnx_bytes: bytes, threads: int) -> Any:
        """What runs the exported graph: ``run(output names, feed) → arrays``."""
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle pool threads sleep instead of spinning: the cores are shared with other
        # replicas.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only
        return onnxruntime.InferenceSession(onnx_bytes, options,
                                            providers=["CPUExecutionProvider"])

    def forward(self, batch: dict[str, Any]) -> Any:
        import torch

        ids = batch["input_ids"]
        if ids.numel() > self.torch_above_tokens:
            return super().forward(batch)
        feed = {}
        for name in self._inputs:
            value = batch.get(name)
            # A model that takes token types and gets none reads zeros, as in PyTorch.
            feed[name] = (value if value is not None else torch.zeros_like(ids)).numpy()
        values = self._session.run(self._outputs, feed)
        return SimpleNamespace(**{name: torch.from_numpy(value)
                                  for name, value in zip(self._outputs, values, strict=True)})


def _sample(model: Any, names: list[str], rows: int, width: int, seed: int) -> dict[str, Any]:
    """Random token ids with a padded row (so the export keeps the attention mask)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    vocab = int(model.config.vocab_size)
    low = min(5, vocab - 1)
    batch = {"input_ids": torch.randint(low, vocab, (rows, width), generator=generator)}
    if "attention_mask" in names:
        mask = torch.ones(rows, width, dtype=torch.int64)
        if rows > 1:
            mask[0, width // 2:] = 0
        batch["attention_mask"] = mask
    if "token_type_ids" in names:
        batch["token_type_ids"] = torch.zeros(rows, width, dtype=torch.int64)
    return batch


def _tensor_outputs(output: Any) -> dict[str, Any]:
    import torch

    return {name: value for name, value in output.items() if isinstance(value, torch.Tensor)}


def _export(model: Any, sample: dict[str, Any], reference: dict[str, Any]) -> bytes:
    """The ONNX graph of ``model`` traced on ``sample``, whose tensor outputs are
    ``reference``."""
    import torch

    names, outputs = list(sample), list(reference)

    class Positional(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: Any) -> tuple:
            output = self.model(**dict(zip(names, args, strict=True)))
            return tuple(output[name] for name in outputs)

    axes = {name: {0: "rows", 1: "width"} for name in names}
    for name, value in reference.items():
        axes[name] = {0: "rows"}
        if value.dim() > 1 and value.shape[1] == _SAMPLE_WIDTH:
            axes[name][1] = "width"
    buffer = io.BytesIO()
    # The exporter warns about every Python branch it traces (e.g. "is the mask all ones"):
    # the sample is padded so the general branch is the one recorded, and _check proves it.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript exporter (dynamo=False) writes to a file object too; torch's
        # annotation names only paths.
        torch.onnx.export(
            Positional().eval(), tuple(sample.values()), buffer,  # type: ignore[arg-type]
            input_names=names, output_names=outputs, dynamic_axes=axes, opset_version=17,
            dynamo=False,
        )
    return buffer.getvalue()


def _check(model: Any, engine: OnnxEngine, names: list[str]) -> None:
    """Raise unless ONNX Runtime answers as PyTorch on batches unlike the export's sample
    (small enough to stay under ``torch_above_tokens``, so ONNX Runtime is what runs)."""
    import torch

    for rows, width in ((1, 5), (4, 17)):
        batch = _sample(model, names, rows, width, seed=rows)
        with torch.no_grad():
            expected = _tensor_outputs(model(**batch))
        got = vars(engine.forward(batch))
        mask = batch.get("attention_mask", torch.ones(rows, width)).bool().numpy()
        for name, value in got.items():
            want, have = expected[name].float().numpy(), value.float().numpy()
            if want.shape != have.shape:
                raise ValueError(f"{name}: shape {have.shape}, PyTorch gives {want.shape}")
            if want.ndim > 1 and want.shape[1] == width:  # per token: padding is not compared
                want, have = want[mask], have[mask]
            error = float(np.abs(want - have).max()) if want.size else 0.0
            if error > TOLERANCE * max(1.0, float(np.abs(want).max())):
                raise ValueError(f"{name} differs from PyTorch by {error:.3g}")


def accelerate(engine: TorchEngine, threads: int, on_copy: bool = False,
               kind: type[OnnxEngine] = OnnxEngine) -> TorchEngine:
    """``engine``'s model exported and run by a ``kind`` engine (:class:`OnnxEngine` or a
    subclass), or ``engine`` unchanged (with a warning) off the CPU or when the export or
    its check fails.

    ``on_copy``: trace a copy of the model, so that ``engine`` may keep serving from another
    thread meanwhile (the exporter hooks every module of what it traces).
    """
    if engine.device != "cpu":
        logger.warning("engine %s: %s runs on the CPU only; %s keeps PyTorch", kind.name,
                       kind.runtime, engine.device)
        return engine
    try:
        import torch

        model = copy.deepcopy(engine.model) if on_copy else engine.model

        accepted = inspect.signature(model.forward).parameters
        names = [name for name in INPUTS if name in accepted]
        sample = _sample(model, names, _SAMPLE_ROWS, _SAMPLE_WIDTH, seed=0)
        with torch.no_grad():
            reference = _tensor_outputs(model(**sample))
        onnx = kind(engine, kind.session(_export(model, sample, reference), threads), names,
                    list(reference))
        _check(model, onnx, names)
    except Exception as exc:  # any exporter or runtime failure: serve with PyTorch
        logger.warning("engine %s: keeping PyTorch (%s: %s)", kind.name, type(exc).__name__,
                       exc)
        return engine
    logger.info("engine %s: %s runs passes of up to %d tokens (%d threads)", kind.name,
                kind.runtime, TORCH_ABOVE_TOKENS, threads)
    return onnx
