"""Model loading and batched forward passes (PyTorch, or ONNX Runtime with `engine: onnx`; no Ray).

The small backend surface the deployments need: :meth:`ModelRunner.load`,
:meth:`ModelRunner.run` and :meth:`ModelRunner.health`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serving import onnx_engine
from serving.models import resolve_model_source
from serving.tasks import Task, generates, task_class
from serving.tokenization import EncodedInputs, length_buckets, pad_batch

logger = logging.getLogger(__name__)

_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}
# Architectures whose activations overflow float16's range (they were trained in bfloat16;
# T5's feed-forward outputs exceed 65504): 'auto' never gives them float16.
FP16_UNSAFE = frozenset({"t5", "mt5", "umt5", "longt5", "switch_transformers"})


def select_device(requested: str, cuda_available: bool, mps_available: bool = False) -> str:
    """The device a replica should use; 'auto' prefers CUDA, and a missing accelerator
    falls back to the CPU with a log line instead of failing."""
    if requested == "auto":
        return "cuda" if cuda_available else "cpu"
    if requested == "cuda" and not cuda_available:
        logger.warning("device 'cuda' requested but no CUDA device is visible; using the CPU")
        return "cpu"
    if requested == "mps" and not mps_available:
        logger.warning("device 'mps' requested but MPS is unavailable; using the CPU")
        return "cpu"
    return requested


def select_dtype(requested: str, device: str, model_type: str | None = None,
                 bf16_supported: bool = True) -> str:
    """The dtype a replica should use.

    'auto' is float16 on CUDA, except for the architectures of :data:`FP16_UNSAFE`, which
    get bfloat16 (float32 on GPUs without bfloat16, before Ampere); float32 elsewhere. An
    explicit choice is kept, except float16 on the CPU (slow or missing half-precision
    kernels) and bfloat16 on a GPU without it, which both become float32 with a warning.

    Args:
        requested: ``ModelSpec.dtype``.
        device: what :func:`select_device` chose.
        model_type: the model config's ``model_type`` (e.g. ``"bert"``, ``"t5"``).
        bf16_supported: whether the CUDA device computes in bfloat16
            (``torch.cuda.is_bf16_supported()``); ignored off CUDA.
    """
    fp16_unsafe = model_type in FP16_UNSAFE
    if requested == "auto":
        if device != "cuda":
            return "float32"
        if not fp16_unsafe:
            return "float16"
        return "bfloat16" if bf16_supported else "float32"
    if device == "cpu" and requested == "float16":
        logger.warning("float16 is slow or unsupported on the CPU; using float32")
        return "float32"
    if device == "cuda" and requested == "bfloat16" and not bf16_supported:
        logger.warning("bfloat16 requested but this GPU has no bfloat16 support; using float32")
        return "float32"
    if device == "cuda" and requested == "float16" and fp16_unsafe:
        logger.warning("%s models are known to overflow in float16 (NaN or inf outputs); "
                       "prefer dtype bfloat16 or float32", model_type)
    return _DTYPES[requested]


def to_device(array: np.ndarray, device: str) -> Any:
    """``array`` as a tensor on ``device``.

    On CUDA the host copy is pinned (page-locked) and copied with ``non_blocking=True``,
    so the transfer is queued on the current stream instead of stalling this thread; on
    the CPU the tensor shares the array's memory (no copy, no pinning, which would only
    cost a page-locked allocation there).
    """
    import torch

    tensor = torch.from_numpy(array)
    if device == "cpu":
        return tensor
    if device.startswith("cuda"):
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def maybe_compile(model: Any, device: str, enabled: bool) -> Any:
    """``torch.compile`` the model for CUDA replicas when ``enabled``; unchanged elsewhere.

    Compiled with dynamic shapes and without CUDA graphs: batches differ in size and
    length (length buckets), and CUDA graphs would record one graph per distinct shape.
    Compiling happens lazily, on the first batches (seconds each). On other devices this
    is a no-op with a log line: CPU compiling needs a C++ toolchain at run time and its
    gain was not measured.
    """
    if not enabled:
        return model
    if device != "cuda":
        logger.warning("compile: torch.compile is applied on CUDA only; running %s eagerly",
                       device)
        return model
    import torch

    logger.info("compile: torch.compile(dynamic=True) on %s (compiles on first batches)",
                device)
    return torch.compile(model, dynamic=True)


def quantize_int8(model: Any, device: str) -> Any:
    """Dynamic int8 quantization of the Linear layers (weights int8, activations quantized
    per batch): faster on CPUs, slightly different numbers. CPU only; elsewhere the model is
    returned unchanged with a log line."""
    import torch

    if device != "cpu":
        logger.warning("quantize: int8 is CPU-only; serving %s unquantized", device)
        return model
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    # Per-channel weight scales: measured closer to float32 than per-tensor ones (MiniLM
    # cosine 0.973 vs 0.945 on the benchmark's texts) for about the same speed.
    return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig},
                            dtype=torch.qint8)


@dataclass
class BatchStats:
    """Running totals of a model replica's forward passes."""

    batches: int = 0
    texts: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    forward_s: float = 0.0

    def record(self, lengths: list[int], groups: list[list[int]], seconds: float) -> int:
        """One batch: its texts' token counts, how they were grouped into padded passes.
        Returns the batch's padded token count."""
        padded = sum(len(group) * max(lengths[i] for i in group) for group in groups)
        self.batches += 1
        self.texts += len(lengths)
        self.tokens += sum(lengths)
        self.padded_tokens += padded
        self.forward_s += seconds
        return padded

    def as_dict(self) -> dict:
        stats = asdict(self)
        stats["mean_batch_texts"] = self.texts / self.batches if self.batches else 0.0
        stats["padding_ratio"] = 1 - self.tokens / self.padded_tokens if self.padded_tokens else 0.0
        return stats


# How much lower than the ingress, tokenizer and HTTP proxy a model replica's threads run
# (Linux niceness). Models are the CPU-hungry part: when cores are short, the front door
# still parses, routes and refuses at once, and the models get every cycle it leaves idle.
MODEL_NICENESS = 10


def lower_cpu_priority(niceness: int = MODEL_NICENESS) -> None:
    """Raise this process's niceness by ``niceness``, for every thread it has (Linux sets
    niceness per thread; threads started later inherit their creator's)."""
    tasks = Path("/proc/self/task")
    threads = [int(tid) for tid in os.listdir(tasks)] if tasks.is_dir() else [0]
    for tid in threads:
        with contextlib.suppress(OSError):  # a thread that has just ended
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + niceness)


# Forward passes failing back to back before the replica reports itself unhealthy (one bad
# request fails at most twice in a row: in its merged batch, then alone).
MAX_FAILURES_IN_A_ROW = 5


class ModelRunner:
    """A loaded model plus the task logic that drives it."""

    def __init__(self, model: Any, task: Task, device: str) -> None:
        self.model = model
        self.engine = getattr(model, "engine", "torch")
        self.task = task
        self.device = device
        self.stats = BatchStats()
        # Called after each batch with (texts, tokens, padded tokens, forward seconds).
        self.on_batch: Callable[[int, int, int, float], None] | None = None
        self.failures_in_a_row = 0  # forward passes that raised since the last success

    @classmethod
    def load(cls, settings: dict) -> ModelRunner:
        """Load the model described by ``ModelSpec.load_settings()``."""
        import torch
        import transformers

        if settings.get("num_threads"):
            torch.set_num_threads(settings["num_threads"])
        device = select_device(
            settings["device"], torch.cuda.is_available(), torch.backends.mps.is_available()
        )
        source = resolve_model_source(settings["model"])
        config = transformers.AutoConfig.from_pretrained(
            source, revision=settings.get("revision"),
            trust_remote_code=settings.get("trust_remote_code", False),
        )
        bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
        dtype = select_dtype(settings["dtype"], device, config.model_type, bf16)
        task_type = task_class(settings["task"])
        auto_class = getattr(transformers, task_type.model_class)
        model = auto_class.from_pretrained(
            source,
            config=config,
            revision=settings.get("revision"),
            dtype=getattr(torch, dtype),
            trust_remote_code=settings.get("trust_remote_code", False),
            use_safetensors=True,
        )
        model.to(device).eval()
        if settings.get("quantize", "none") == "int8":
            model = quantize_int8(model, device)
        task = task_type.from_model(
            model, source=source, revision=settings.get("revision"),
            pooling=settings.get("pooling", "auto"), normalize=settings.get("normalize"),
        )
        if settings.get("compile") and generates(settings["task"]):
            logger.warning("compile: not applied to %s (generate() runs the eager model)",
                           settings["task"])
        else:
            model = maybe_compile(model, device, settings.get("compile", False))
        if settings.get("engine") == "onnx":
            model = onnx_engine.accelerate(model, device, torch.get_num_threads())
        logger.info("loaded %s (%s) on %s as %s", settings["model"], task.name, device, dtype)
        return cls(model, task, device)

    def run(self, batch: list[EncodedInputs], by_length: bool = True) -> list[list[Any]]:
        """Forward every text of ``batch``; outputs regrouped per item.

        ``by_length`` runs texts of similar length together (see :func:`length_buckets`)
        instead of padding the whole batch to its longest text.
        """
        rows = [row for item in batch for row in item.rows()]
        lengths = [len(ids) for ids, _ in rows]
        groups = length_buckets(lengths) if by_length else [list(range(len(rows)))]
        started = time.perf_counter()
        outputs: list[Any] = [None] * len(rows)
        try:
            for group in groups:
                for index, output in zip(group, self._forward([rows[i] for i in group],
                                                              batch[0].pad_token_id),
                                         strict=True):
                    outputs[index] = output
        except Exception:
            self.failures_in_a_row += 1
            raise
        self.failures_in_a_row = 0
        seconds = time.perf_counter() - started
        padded = self.stats.record(lengths, groups, seconds)
        if self.on_batch is not None:
            self.on_batch(len(lengths), sum(lengths), padded, seconds)
        grouped, start = [], 0
        for item in batch:
            grouped.append(outputs[start : start + len(item)])
            start += len(item)
        return grouped

    def _forward(self, rows: list[tuple[np.ndarray, np.ndarray | None]], pad_id: int) -> list:
        import torch

        tensors = {key: to_device(value, self.device)
                   for key, value in pad_batch(rows, pad_id).items()}
        with torch.inference_mode():
            return list(self.task.forward(self.model, tensors))

    def health(self) -> None:
        """Raise if the model can no longer compute: its forward passes keep failing (a
        broken device, exhausted memory), or its weights hold NaN or infinite values."""
        import torch

        if self.failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
            raise RuntimeError(f"the last {self.failures_in_a_row} forward passes failed")
        # One sum per weight (in float32, so large half-precision weights cannot overflow):
        # a NaN or an infinity anywhere makes it non-finite. ~14x cheaper than an
        # element-wise isfinite() scan, which took ~150 ms of a replica's core for MiniLM at
        # every health check (every 10 s).
        with torch.inference_mode():
            named = [(name, parameter) for name, parameter in self.model.named_parameters()
                     if parameter.is_floating_point()]
            if not named:
                return
            sums = torch.stack([parameter.sum(dtype=torch.float32) for _, parameter in named])
            bad = (~torch.isfinite(sums)).nonzero()
            if len(bad):
                raise RuntimeError(f"weight {named[int(bad[0])][0]} holds NaN or infinite values")
