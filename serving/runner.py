"""Batched forward passes of a loaded model, whatever its engine (no Ray).

The small surface the deployments need: :meth:`ModelRunner.load`, :meth:`ModelRunner.run`
and :meth:`ModelRunner.health`. Loading and running the model itself is the engine's
(``serving/engines/``); grouping a batch by length, padding and statistics are here.
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

from serving.batching import EncodedInputs, length_buckets, pad_batch
from serving.engines import ENGINES, Engine
from serving.engines.torch_engine import to_device
from serving.load_settings import LoadSettings
from serving.models import resolve_model_source
from serving.tasks import Task, task_class

logger = logging.getLogger(__name__)


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


_lowered = False


def lower_cpu_priority(niceness: int = MODEL_NICENESS) -> None:
    """Raise this process's niceness by ``niceness``, for every thread it has (Linux sets
    niceness per thread; threads started later inherit their creator's). Once per process:
    later calls (a pool replica loading another model) do nothing."""
    global _lowered
    if _lowered:
        return
    _lowered = True
    tasks = Path("/proc/self/task")
    threads = [int(tid) for tid in os.listdir(tasks)] if tasks.is_dir() else [0]
    for tid in threads:
        with contextlib.suppress(OSError):  # a thread that has just ended
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + niceness)


def _passes(lengths: list[int], modes: list[str], by_length: bool) -> list[list[int]]:
    """Row indices per forward pass: rows of one mode, of similar length if ``by_length``."""
    passes = []
    for mode in dict.fromkeys(modes):
        indices = [i for i, row_mode in enumerate(modes) if row_mode == mode]
        if not by_length:
            passes.append(indices)
            continue
        buckets = length_buckets([lengths[i] for i in indices])
        passes += [[indices[j] for j in bucket] for bucket in buckets]
    return passes


# Forward passes failing back to back before the replica reports itself unhealthy (one bad
# request fails at most twice in a row: in its merged batch, then alone).
MAX_FAILURES_IN_A_ROW = 5


class ModelRunner:
    """A loaded model (its :class:`Engine`) plus the task logic that drives it."""

    def __init__(self, engine: Engine, task: Task) -> None:
        self.engine = engine
        self.task = task
        self.device = engine.device
        self.stats = BatchStats()
        # Called after each batch with (texts, tokens, padded tokens, forward seconds).
        self.on_batch: Callable[[int, int, int, float], None] | None = None
        self.failures_in_a_row = 0  # forward passes that raised since the last success

    @property
    def model(self) -> Any:
        """The Hugging Face model (what ``generate()`` runs on)."""
        return self.engine.model

    @classmethod
    def load(cls, settings: LoadSettings) -> ModelRunner:
        """Load the model ``settings`` describe with its engine, and its task."""
        engine = ENGINES[settings.engine].load(settings)
        task = task_class(settings.task).from_model(
            engine.model, source=resolve_model_source(settings.model),
            revision=settings.revision, pooling=settings.pooling, normalize=settings.normalize,
        )
        logger.info("loaded %s (%s) on %s as %s with engine %s", settings.model, task.name,
                    engine.device, engine.dtype, engine.name)
        return cls(engine, task)

    def run(self, batch: list[EncodedInputs], by_length: bool = True,
            adapters: list[str] | None = None, modes: list[str] | None = None,
            ) -> list[list[Any]]:
        """Forward every text of ``batch``; outputs regrouped per item.

        ``by_length`` runs texts of similar length together (see :func:`length_buckets`)
        instead of padding the whole batch to its longest text. ``adapters``: per item, the
        PEFT adapter its rows run with (a pool of adapters; rows of several adapters share
        each pass). ``modes``: per item, its rows' :meth:`Task.forward_mode` (rows of
        different modes run in different passes).
        """
        rows = [row for item in batch for row in item.rows()]
        names = None if adapters is None else [
            name for item, name in zip(batch, adapters, strict=True) for _ in item.rows()]
        row_modes = [""] * len(rows) if modes is None else [
            mode for item, mode in zip(batch, modes, strict=True) for _ in item.rows()]
        lengths = [len(ids) for ids, _ in rows]
        groups = _passes(lengths, row_modes, by_length)
        started = time.perf_counter()
        outputs: list[Any] = [None] * len(rows)
        try:
            for group in groups:
                extra = {} if names is None else {"adapter_names": [names[i] for i in group]}
                passed = self._forward([rows[i] for i in group], batch[0].pad_token_id, extra,
                                       row_modes[group[0]])
                for index, output in zip(group, passed, strict=True):
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

    def _forward(self, rows: list[tuple[np.ndarray, np.ndarray | None]], pad_id: int,
                 extra: dict[str, Any] | None = None, mode: str = "") -> list:
        import torch

        tensors = {key: to_device(value, self.device)
                   for key, value in pad_batch(rows, pad_id).items()}
        tensors.update(extra or {})
        with torch.inference_mode():
            if mode:
                return list(self.task.forward_in_mode(self.engine, tensors, mode))
            return list(self.task.forward(self.engine, tensors))

    def health(self) -> None:
        """Raise if the model can no longer compute: its forward passes keep failing (a
        broken device, exhausted memory), or its engine reports a fault (e.g. NaN or
        infinite weights)."""
        if self.failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
            raise RuntimeError(f"the last {self.failures_in_a_row} forward passes failed")
        self.engine.health()
