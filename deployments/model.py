"""The model deployment: dynamic batching with ``@serve.batch`` around a ModelRunner."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from ray import serve

from deployments.metrics import ModelMetrics
from deployments.tokenizer import Tokenizing
from serving.batching import EncodedInputs
from serving.errors import UnavailableError
from serving.load_settings import LoadSettings
from serving.runner import ModelRunner, lower_cpu_priority
from serving.tasks import Slice, TaskParameters


@dataclass(frozen=True)
class _Queued:
    """Texts waiting for a batch, and since when."""

    encoded: EncodedInputs
    since: float
    adapter: str | None = None  # a pool of PEFT adapters: the one these texts run with
    mode: str = ""  # the task's forward mode for these texts (``Task.forward_mode``)


def _texts_in(items: list[_Queued]) -> int:
    return sum(len(item.encoded) for item in items)


class _Batching:
    """Batches encoded texts across requests, runs the forward pass, post-processes."""

    def __init__(self, settings: LoadSettings, metrics: ModelMetrics | None = None,
                 yield_cpu: bool = True) -> None:
        self._runner = ModelRunner.load(settings)
        self._max_batch_size = 32
        self._by_length = True
        self._metrics = metrics or ModelMetrics(settings.name, settings.task)
        self._runner.on_batch = self._metrics.batch
        # One batch queue per instance (a pool replica holds several models): Serve's
        # decorator on the method would make one queue per class, shared by them all.
        self._forward = serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005,
                                    batch_size_fn=_texts_in)(self._forward_batch)
        # Only once loaded: a replacement replica loads at full priority, so it recovers
        # fast on a busy machine, then yields the CPU to the ingress, tokenizer and proxy
        # (unless it runs in the ingress, ``yield_cpu=False``).
        if yield_cpu:
            lower_cpu_priority()

    def reconfigure(self, user_config: dict) -> None:
        """Apply batch settings live (``user_config`` changes do not restart replicas)."""
        self._max_batch_size = int(user_config["max_batch_size"])
        self._by_length = bool(user_config.get("length_buckets", True))
        self._forward.set_max_batch_size(self._max_batch_size)
        self._forward.set_batch_wait_timeout_s(float(user_config["batch_wait_timeout_s"]))

    async def infer(
        self, encoded: EncodedInputs, params: TaskParameters, texts: list[str] | None = None,
        layout: str = "texts", text_pairs: list[str] | None = None,
    ) -> list[Any]:
        """Answers for every input of one request, in order (``texts``/``text_pairs``: the
        encoded texts, for tasks that need them, such as token-classification)."""
        piece = Slice(
            encoded.num_inputs, params, layout, tuple(texts) if texts is not None else None,
            tuple(text_pairs) if text_pairs is not None else None,
        )
        (answers,) = await self.infer_many(encoded, [piece])
        return answers

    async def infer_many(self, encoded: EncodedInputs, slices: list[Slice],
                         adapter: str | None = None) -> list[list[Any]]:
        """Answers for several requests whose texts were encoded together.

        Args:
            encoded: the texts of every request, back to back (windowed tasks: several rows
                per input, ``encoded.owners`` telling whose).
            slices: per request, how many of the inputs are its own, its parameters and layout.
            adapter: the loaded PEFT adapter to run them with (a pool of adapters).
        """
        # Before the texts join a batch: a request this model cannot run fails alone.
        modes = {self._runner.task.forward_mode(piece.params) for piece in slices}
        if len(modes) != 1:  # the ingress groups requests by their parameters' batch key
            raise ValueError(f"one call's requests ask for different forward modes {modes}")
        now, mode = time.perf_counter(), modes.pop()
        chunks = encoded.chunks(self._max_batch_size)
        outputs = await asyncio.gather(*(self._forward(_Queued(chunk, now, adapter, mode))
                                         for chunk in chunks))
        started = time.perf_counter()
        rows = [row for chunk in outputs for row in chunk]
        task, answers = self._runner.task, []
        tokens = None
        if task.needs_offsets:
            tokens = encoded.window_rows() if task.windowed else encoded.token_rows()
        ranges = encoded.row_ranges([piece.count for piece in slices])
        for piece, (start, stop) in zip(slices, ranges, strict=True):
            answers.append(task.postprocess_request(
                rows[start:stop], piece.params, piece.layout,
                tokens=None if tokens is None else tokens[start:stop],
                texts=piece.texts, text_pairs=piece.text_pairs,
            ))
        self._metrics.postprocessed(time.perf_counter() - started)
        return answers

    async def details(self) -> dict:
        """What ``GET /info`` reports from the model: the dtype its engine runs, and its
        pooling or labels."""
        task = self._runner.task
        found: dict = {"dtype": self._runner.engine.dtype}
        if getattr(task, "pooling", None):
            found["pooling"] = "+".join(task.pooling)
        if getattr(task, "splade", None):
            found["pooling"] = "splade"  # as TEI reports a SPLADE model
        if getattr(task, "id2label", None):
            found["id2label"] = {int(i): label for i, label in task.id2label.items()}
        return found

    async def _forward_batch(self, items: list[_Queued]) -> list[list[Any]]:
        # Let every other batch that is ready start first: a pool replica's models then
        # take turns instead of a busy model's batches running back to back.
        await asyncio.sleep(0)
        now = time.perf_counter()
        for item in items:
            self._metrics.waited(now - item.since)
        # The forward runs on the event loop, not in a thread: requests that arrive
        # meanwhile wait in Ray's queue and all join the next batch. (In a thread, the
        # loop fought the forward for the GIL, admitted arrivals one by one, and batches
        # stayed at ~1 text under open-loop load: see the README's Performance.)
        adapters = [item.adapter or "" for item in items] if items[0].adapter else None
        modes = [item.mode for item in items] if any(item.mode for item in items) else None
        return self._runner.run([item.encoded for item in items], self._by_length, adapters,
                                modes)

    @property
    def engine(self) -> Any:
        """The engine running this model's forward passes."""
        return self._runner.engine

    def use_engine(self, engine: Any) -> None:
        """Run the next forward passes with ``engine`` (the same model, e.g. exported to ONNX
        Runtime). Call on the event loop: the forward passes run there, never meanwhile."""
        self._runner.engine = engine

    def add_adapter(self, name: str, source: str) -> None:
        """Load a PEFT adapter of this model (a pool of adapters; torch engine)."""
        self._runner.engine.add_adapter(name, source)  # type: ignore[attr-defined]

    def remove_adapter(self, name: str) -> None:
        self._runner.engine.remove_adapter(name)  # type: ignore[attr-defined]

    def stop_batching(self) -> None:
        """End this instance's batch queue (it holds the instance: an unloaded pool member
        is freed only then). Call once nothing is queued."""
        queue = self._forward._is_batching_task_alive.__self__._queue  # Serve's lazy queue
        if queue is not None and queue._handle_batch_task is not None:
            queue._handle_batch_task.cancel()
        # The queue's task holds this instance (its bound method) and this instance holds
        # the queue: drop our end of that cycle so the weights go at once, not at the next
        # garbage collection.
        del self._forward

    def describe(self) -> dict:
        """This replica's identity and live batch settings (for operators and tests)."""
        return {
            "replica_id": serve.get_replica_context().replica_id.unique_id,
            "device": self._runner.device,
            "engine": self._runner.engine.name,
            "max_batch_size": self._forward._get_max_batch_size(),
            "batch_wait_timeout_s": self._forward._get_batch_wait_timeout_s(),
            "length_buckets": self._by_length,
            "stats": self._runner.stats.as_dict(),
        }

    def check_health(self) -> None:
        try:
            self._runner.health()
        except Exception as exc:  # any failure means this replica cannot answer
            raise UnavailableError(f"model is not answering: {exc}") from exc


@serve.deployment
class Model(_Batching):
    """The model deployment of a tokenizer → model pipeline."""


class Colocated(_Batching, Tokenizing):
    """A model that tokenizes itself: the replica of a ``colocate_tokenizer`` model, and
    each model a pool replica holds."""

    def __init__(self, settings: LoadSettings, metrics: ModelMetrics | None = None,
                 yield_cpu: bool = True) -> None:
        self._load_tokenizer(settings)
        super().__init__(settings, metrics, yield_cpu)

    async def infer_texts(
        self, texts: list[str], text_pairs: list[str] | None, truncate: bool,
        slices: list[Slice], with_offsets: bool = False,
        windows: list[tuple[int | None, int | None]] | None = None, adapter: str | None = None,
        truncation_side: str = "right",
    ) -> list[list[Any]]:
        """``infer_many`` of the texts the Tokenizer deployment would have encoded."""
        encoded = await self.encode(texts, text_pairs, truncate, with_offsets, windows,
                                    truncation_side)
        return await self.infer_many(encoded, slices, adapter)

    async def details(self) -> dict:
        """The model's details and the tokenizer's window."""
        return {**await super().details(), **self._tokenizer_details()}


@serve.deployment
class ColocatedModel(Colocated):
    """A model deployment that tokenizes itself (``colocate_tokenizer``): one hop less per
    request; tokenization then shares the model's CPUs."""
