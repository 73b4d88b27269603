"""The generator deployment: batched ``generate()`` of decoder-only models (text-generation)
and of encoder-decoder models (summarization, translation, text2text-generation: the task
instance is then a :class:`serving.tasks.seq2seq.Seq2Seq`; both implement
:class:`serving.tasks.generative.GenerativeTask`: ``prepare``, ``generate``, ``stream``).

It replaces the tokenizer → model pipeline for text-generation models: the prompts must be
left-padded, grouped by their generation settings and decoded with the tokenizer, so it
tokenizes, generates and decodes itself (the shared tokenizer deployment right-pads for
encoders). Batching works as in :class:`deployments.model.Model`: ``@serve.batch`` counted
in prompts, the same ``user_config`` contract, ``generate()`` in a thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ray import serve

from deployments.metrics import ModelMetrics
from serving.errors import UnavailableError
from serving.load_settings import LoadSettings
from serving.runner import ModelRunner, lower_cpu_priority
from serving.tasks.generative import GenerativeTask
from serving.tasks.text_generation import Prompt, TextGenerationParameters


@dataclass(frozen=True)
class _Piece:
    """Some prompts of one request (at most a batch), with its parameters."""

    prompts: tuple[Prompt, ...]
    params: TextGenerationParameters


def _prompts_in(items: list[_Piece]) -> int:
    return sum(len(item.prompts) for item in items)


@serve.deployment
class Generator:
    """Batches prompts across requests; rows with the same settings share one generate()."""

    def __init__(self, settings: LoadSettings) -> None:
        self._runner = ModelRunner.load(settings)
        self._task: GenerativeTask = self._runner.task  # type: ignore[assignment]
        self._max_batch_size = 32
        self._stats = {"batches": 0, "prompts": 0, "generate_s": 0.0, "streams": 0}
        self._metrics = ModelMetrics(settings.name, settings.task)
        # Only once loaded: a replacement replica loads at full priority, so it recovers
        # fast on a busy machine, then yields the CPU to the ingress, tokenizer and proxy.
        lower_cpu_priority()

    def reconfigure(self, user_config: dict) -> None:
        """Apply batch settings live (``user_config`` changes do not restart replicas)."""
        self._max_batch_size = int(user_config["max_batch_size"])
        self._generate.set_max_batch_size(self._max_batch_size)
        self._generate.set_batch_wait_timeout_s(float(user_config["batch_wait_timeout_s"]))

    async def infer_many(
        self, texts: list[list[str]], params: list[TextGenerationParameters]
    ) -> list[list[Any]]:
        """Answers of several requests: per request, ``[{"generated_text"}]`` per text.

        Raises:
            InvalidInputError: a prompt does not fit the model window with its max_new_tokens.
        """
        requests = [self._task.prepare(t, p) for t, p in zip(texts, params, strict=True)]
        size = self._max_batch_size
        pieces = [
            (r, _Piece(tuple(prompts[start : start + size]), p))
            for r, (prompts, p) in enumerate(zip(requests, params, strict=True))
            for start in range(0, len(prompts), size)
        ]
        outputs = await asyncio.gather(*(self._generate(piece) for _, piece in pieces))
        answers: list[list[Any]] = [[] for _ in requests]
        for (r, _), output in zip(pieces, outputs, strict=True):
            answers[r].extend(output)
        return answers

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005, batch_size_fn=_prompts_in)
    async def _generate(self, items: list[_Piece]) -> list[list[Any]]:
        return await asyncio.to_thread(self._run_batch, items)

    def _run_batch(self, items: list[_Piece]) -> list[list[Any]]:
        started = time.perf_counter()
        answers = self._task.generate(
            self._runner.model, [(item.prompts, item.params) for item in items],
            max_batch_size=self._max_batch_size,
        )
        self._stats["batches"] += 1
        self._stats["prompts"] += _prompts_in(items)
        seconds = time.perf_counter() - started
        self._stats["generate_s"] += seconds
        self._metrics.batch(_prompts_in(items), 0, 0, seconds)  # tokens: encoder models only
        return answers

    async def stream(self, text: str, params: TextGenerationParameters) -> AsyncIterator[dict]:
        """TGI-style events of one prompt, one per generated token (call with
        ``handle.options(stream=True)``); the last carries ``generated_text``."""
        (prompt,) = self._task.prepare([text], params)  # errors before the first event
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancelled = threading.Event()
        done = object()

        def run() -> None:
            try:
                self._task.stream(
                    self._runner.model, prompt, params,
                    lambda event: loop.call_soon_threadsafe(queue.put_nowait, event), cancelled,
                )
            except Exception as exc:  # delivered to the consumer
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, done)

        self._stats["streams"] += 1
        threading.Thread(target=run, name="text-generation-stream", daemon=True).start()
        try:
            while (event := await queue.get()) is not done:
                if isinstance(event, Exception):
                    raise event
                yield event
        finally:
            cancelled.set()  # the client went away or generation ended: stop generating

    def details(self) -> dict:
        """What ``GET /info`` reports from this model: its window (input + generated)."""
        window = getattr(self._task, "model_window", None)
        return {} if window is None else {"max_input_length": int(window)}

    def describe(self) -> dict:
        """This replica's identity and live batch settings (for operators and tests)."""
        return {
            "replica_id": serve.get_replica_context().replica_id.unique_id,
            "device": self._runner.device,
            "max_batch_size": self._generate._get_max_batch_size(),
            "batch_wait_timeout_s": self._generate._get_batch_wait_timeout_s(),
            "stats": dict(self._stats),
        }

    def check_health(self) -> None:
        try:
            self._runner.health()
        except Exception as exc:  # any failure means this replica cannot answer
            raise UnavailableError(f"model is not answering: {exc}") from exc
