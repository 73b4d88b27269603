"""The generator deployment: text generation by decoder-only models (text-generation) and
encoder-decoder models (summarization, translation, text2text-generation: the task
instance is then a :class:`serving.tasks.seq2seq.Seq2Seq`; both implement
:class:`serving.tasks.generative.GenerativeTask`: ``prepare``, ``generate``, ``stream``).

It replaces the tokenizer → model pipeline: it tokenizes, generates and decodes itself.
Decoder-only models decode with continuous batching (``serving/decoding/``: requests join
and leave the running batch every step, ``max_batch_size`` rows at most) unless the
config says ``generation.scheduler: static`` or the model or request needs ``generate()``
(encoder-decoder models, beam search, generation settings it does not apply). The static
path batches as :class:`deployments.model.Model` does: ``@serve.batch`` counted in prompts,
rows with identical settings sharing one ``generate()`` in a thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from ray import serve

from deployments.metrics import GenerationMetrics, ModelMetrics
from serving.errors import InvalidInputError, UnavailableError
from serving.load_settings import LoadSettings
from serving.runner import ModelRunner, lower_cpu_priority
from serving.tasks.generative import GenerativeTask
from serving.tasks.streaming import TokenStreamer, cut_at_stop, events_from_thread
from serving.tasks.text_generation import Prompt, TextGeneration, TextGenerationParameters

logger = logging.getLogger(__name__)


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
        self._generation_metrics = GenerationMetrics(settings.name, settings.task)
        self._generation = settings.generation
        self._continuous = self._continuous_refusal() is None
        self._decoder: Any = None  # an AsyncDecoder, started on the replica's event loop
        # Only once loaded: a replacement replica loads at full priority, so it recovers
        # fast on a busy machine, then yields the CPU to the ingress, tokenizer and proxy.
        lower_cpu_priority()

    def reconfigure(self, user_config: dict) -> None:
        """Apply batch settings live (``user_config`` changes do not restart replicas)."""
        self._max_batch_size = int(user_config["max_batch_size"])
        self._generate.set_max_batch_size(self._max_batch_size)
        self._generate.set_batch_wait_timeout_s(float(user_config["batch_wait_timeout_s"]))
        if self._decoder is not None:
            batcher = self._decoder.batcher
            batcher.limits = dataclasses.replace(batcher.limits, max_running=self._max_batch_size)

    def _continuous_refusal(self) -> str | None:
        """Why this model decodes with ``generate()`` only (logged), or ``None``."""
        from serving.decoding.support import refusal

        if self._generation.scheduler == "static":
            return "generation.scheduler is static"
        if not isinstance(self._task, TextGeneration):
            return "encoder-decoder models decode through generate()"
        reason = refusal(self._runner.model, self._task.pad_token_id)
        if reason is not None:
            logger.warning("%s: continuous batching is off (%s); generate() batches "
                           "requests with identical settings instead", self._runner.name, reason)
        return reason

    def _decoding(self, params: TextGenerationParameters) -> Any:
        """The continuous decoder if it serves ``params`` (no beam search), else ``None``."""
        if not self._continuous or params.num_beams > 1:
            return None
        if self._decoder is None:
            from serving.decoding.aio import AsyncDecoder
            from serving.decoding.scheduler import Limits

            task: TextGeneration = self._task  # type: ignore[assignment]
            self._decoder = AsyncDecoder(
                self._runner.model, task.pad_token_id, task.eos_token_ids,
                Limits(self._generation.max_batch_total_tokens,
                       self._generation.max_batch_prefill_tokens, self._max_batch_size,
                       self._generation.max_waiting),
            )
        return self._decoder

    async def infer_many(
        self, texts: list[list[str]], params: list[TextGenerationParameters]
    ) -> list[list[Any]]:
        """Answers of several requests: per request, ``[{"generated_text"}]`` per text.

        Raises:
            InvalidInputError: a prompt does not fit the model window with its max_new_tokens.
        """
        requests = [self._task.prepare(t, p) for t, p in zip(texts, params, strict=True)]
        return list(await asyncio.gather(*(
            self._answers(prompts, p) for prompts, p in zip(requests, params, strict=True)
        )))

    async def chat(self, messages: list[dict], params: TextGenerationParameters) -> dict:
        """The assistant's answer to ``messages`` (the tokenizer's chat template):
        ``{"generated_text"}`` (the new text), ``details`` when asked.

        Raises:
            InvalidInputError: the model has no chat template, or the prompt does not fit.
        """
        params = params.model_copy(update={"return_full_text": False})
        prompt = self._chat_prompt(messages, params)
        ((answer,),) = await self._answers([prompt], params)
        return answer

    async def _answers(self, prompts: list[Any], params: Any) -> list[list[Any]]:
        """One request's answers: ``[answer]`` per prompt."""
        if self._decoding(params) is None:
            (answers,) = await self._static([prompts], [params])
            return answers
        return list(await asyncio.gather(*(self._complete(p, params) for p in prompts)))

    async def _tokens(self, prompt: Prompt, params: TextGenerationParameters
                      ) -> AsyncIterator[tuple[int, bool]]:
        """The ids the continuous decoder generates for ``prompt`` (each with whether it is
        the last), measured."""
        decoder = self._decoding(params)
        sampling = self._task.sampling(prompt, params)  # type: ignore[attr-defined]
        started, count = time.perf_counter(), 0
        try:
            async with aclosing(decoder.tokens(prompt.input_ids, sampling)) as tokens:
                async for token, last in tokens:
                    if count == 0:
                        self._generation_metrics.first_token(time.perf_counter() - started)
                    count += 1
                    yield token, last
        finally:
            batcher = decoder.batcher
            self._generation_metrics.generated(count, batcher.running, batcher.waiting)

    async def _complete(self, prompt: Prompt, params: TextGenerationParameters) -> list[dict]:
        ids: list[int] = []
        async with aclosing(self._tokens(prompt, params)) as tokens:
            async for token, _ in tokens:
                ids.append(token)
                if params.stop and self._stop_seen(ids, params.stop):
                    break
        return [self._task.answer(prompt, ids, params)]  # type: ignore[attr-defined]

    def _stop_seen(self, ids: list[int], stop: list[str]) -> bool:
        text = self._task.tokenizer.decode(ids, skip_special_tokens=True)
        return len(cut_at_stop(text, stop)) < len(text)

    def _chat_prompt(self, messages: list[dict], params: TextGenerationParameters) -> Prompt:
        if not isinstance(self._task, TextGeneration):
            raise InvalidInputError(f"model {self._runner.name!r} ({self._task.name}) does not "
                                    "chat; chat is for text-generation models")
        return self._task.prepare_chat(messages, params)

    async def _static(self, requests: list[list[Any]], params: list[Any]) -> list[list[Any]]:
        """Answers of requests by ``generate()`` batches (rows of identical settings)."""
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

    # Two generate() calls may run at once: a short request arriving while a long batch
    # decodes starts at once instead of waiting for it (head-of-line blocking), at the cost
    # of sharing the cores while both run.
    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005, batch_size_fn=_prompts_in,
                 max_concurrent_batches=2)
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
        self._stats["streams"] += 1
        async for event in self._events(prompt, params):
            yield event

    async def stream_chat(self, messages: list[dict], params: TextGenerationParameters
                          ) -> AsyncIterator[dict]:
        """:meth:`stream` of the assistant's answer to ``messages`` (new text only)."""
        params = params.model_copy(update={"return_full_text": False})
        prompt = self._chat_prompt(messages, params)
        self._stats["streams"] += 1
        async for event in self._events(prompt, params):
            yield event

    async def _events(self, prompt: Any, params: Any) -> AsyncIterator[dict]:
        if self._decoding(params) is None:
            async for event in self._static_events(prompt, params):
                yield event
            return
        out: list[dict] = []
        streamer = TokenStreamer(self._task.tokenizer, params.stop, out.append,
                                 threading.Event())
        async with aclosing(self._tokens(prompt, params)) as tokens:
            async for token, last in tokens:
                streamer.add(token, last)
                while out:
                    yield out.pop(0)
                if streamer.cancelled.is_set():  # a stop sequence: free the row now
                    break
        streamer.finish(self._task.answer(prompt, streamer.ids, params))  # type: ignore[attr-defined]
        while out:
            yield out.pop(0)

    async def _static_events(self, prompt: Any, params: Any) -> AsyncIterator[dict]:
        """Events of ``generate()`` with a streamer, run in a thread."""
        def run(emit: Callable[[dict], None], cancelled: threading.Event) -> None:
            self._task.stream(self._runner.model, prompt, params, emit, cancelled)

        async for event in events_from_thread(run, "text-generation-stream"):
            yield event

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
            "scheduler": "continuous" if self._continuous else "static",
            "decoding": {} if self._decoder is None else {
                **self._decoder.batcher.stats, "running": self._decoder.batcher.running,
                "waiting": self._decoder.batcher.waiting},
        }

    def check_health(self) -> None:
        try:
            self._runner.health()
        except Exception as exc:  # any failure means this replica cannot answer
            raise UnavailableError(f"model is not answering: {exc}") from exc
