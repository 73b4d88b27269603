"""The decoding loop: admit waiting sequences, step the running batch, deliver tokens.

One thread owns the model and the :class:`~serving.decoding.running.RunningBatch`. Each
iteration it prefills the waiting sequences that fit (one left-padded forward), appends
them to the batch, runs one decoding step for every row and hands the new tokens to the
``sink`` in one call. Rows leave at EOS, at their ``max_new_tokens`` or when cancelled
(a client gone, a stop sequence seen): the next step no longer computes them.

KV memory is bounded by ``max_batch_total_tokens``: a sequence is admitted only if the
padded cache (rows x the widest it can grow to) stays within it, so memory never exceeds
what the operator configured; past that, sequences wait, and past ``max_waiting`` they are
refused (:class:`~serving.errors.OverloadedError`, a 429).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from serving.decoding.choosers import Chooser, choose_tokens
from serving.decoding.running import RunningBatch
from serving.decoding.sampling import Sampling
from serving.errors import InvalidInputError, OverloadedError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """What the loop may hold at once."""

    max_batch_total_tokens: int = 16384
    max_batch_prefill_tokens: int = 2048
    max_running: int = 64
    max_waiting: int = 1024


@dataclass(eq=False)
class Ticket:
    """One submitted sequence; :meth:`cancel` frees its row at the next step."""

    id: int
    prompt: tuple[int, ...]
    sampling: Sampling
    cancelled: bool = False
    generated: int = 0
    submitted_at: float = field(default_factory=time.monotonic)

    def cancel(self) -> None:
        self.cancelled = True

    @property
    def remaining(self) -> int:
        return self.sampling.max_new_tokens - self.generated


@dataclass(frozen=True)
class Event:
    """A sequence's new token (``None`` if it ends without one) and, when it ended, why:
    ``"stop"`` (EOS), ``"length"`` (max_new_tokens), ``"cancelled"`` or ``"error"``
    (``error`` then says what failed)."""

    ticket: Ticket
    token: int | None
    finish_reason: str | None = None
    error: Exception | None = None


Sink = Callable[[list[Event]], None]


class ContinuousBatcher:
    """Runs a decoder-only ``model`` over sequences that join and leave every step."""

    def __init__(self, model: Any, sink: Sink, pad_token_id: int,
                 eos_token_ids: Sequence[int], limits: Limits = Limits(),
                 lock: threading.Lock | None = None) -> None:
        """``sink`` receives each step's events on the loop's thread; ``lock`` is held
        around every forward pass (shared with other users of the model)."""
        self.model, self.sink, self.limits = model, sink, limits
        self.pad_token_id = pad_token_id
        self.eos = frozenset(eos_token_ids)
        self._lock = lock or threading.Lock()
        self._ids = itertools.count()
        self._waiting: deque[Ticket] = deque()
        self._wake = threading.Condition()
        self._rows: list[Ticket] = []
        self._choosers: list[Chooser] = []
        self._histories: list[list[int]] = []
        self._batch: RunningBatch | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="continuous-batching",
                                        daemon=True)
        self.stats = {"steps": 0, "prefills": 0, "tokens": 0, "sequences": 0, "cancelled": 0,
                      "max_rows": 0, "max_cache_tokens": 0, "step_s": 0.0, "prefill_s": 0.0}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self._thread.join(timeout=30)

    @property
    def running(self) -> int:
        return len(self._rows)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def submit(self, prompt: Sequence[int], sampling: Sampling) -> Ticket:
        """Queue one sequence.

        Raises:
            InvalidInputError: it could never fit the KV budget, even alone.
            OverloadedError: ``max_waiting`` sequences are already waiting.
        """
        need = len(prompt) + sampling.max_new_tokens
        if need > self.limits.max_batch_total_tokens:
            raise InvalidInputError(
                f"{len(prompt)} prompt tokens + {sampling.max_new_tokens} new tokens exceed "
                f"this model's KV budget of {self.limits.max_batch_total_tokens} tokens "
                "(generation.max_batch_total_tokens); ask for fewer max_new_tokens"
            )
        ticket = Ticket(next(self._ids), tuple(prompt), sampling)
        with self._wake:
            if len(self._waiting) >= self.limits.max_waiting:
                raise OverloadedError(
                    f"{len(self._waiting)} sequences are waiting for this model; retry later"
                )
            self._waiting.append(ticket)
            self._wake.notify()
        return ticket

    # --- the loop (its own thread) -------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._stopped and not self._waiting and not self._rows:
                    self._wake.wait()
                if self._stopped:
                    return
                admitted = self._admit()
            events: list[Event] = []
            try:
                with self._lock, torch.inference_mode():
                    if admitted:
                        events += self._prefill(admitted)
                    if self._rows:
                        events += self._step()
            except Exception as exc:  # a failed forward fails the rows it held, not the loop
                logger.exception("decoding step failed")
                events += [Event(t, None, "error", exc) for t in self._rows + admitted
                           if t not in {e.ticket for e in events if e.finish_reason}]
                self._reset()
            if events:
                self.sink(events)

    def _admit(self) -> list[Ticket]:
        """Pop the waiting sequences that fit now, first come first served."""
        admitted: list[Ticket] = []
        while self._waiting:
            ticket = self._waiting[0]
            if ticket.cancelled:
                self._waiting.popleft()
                continue
            candidates = admitted + [ticket]
            if admitted and len(candidates) * max(len(t.prompt) for t in candidates) \
                    > self.limits.max_batch_prefill_tokens:
                break
            if not self._fits(candidates):
                break
            admitted.append(self._waiting.popleft())
        return admitted

    def _fits(self, new: list[Ticket]) -> bool:
        rows = self._rows + new
        if len(rows) > self.limits.max_running:
            return False
        width = max([self._batch.width if self._batch else 0] + [len(t.prompt) for t in new])
        growth = max(t.remaining for t in rows)
        return len(rows) * (width + growth) <= self.limits.max_batch_total_tokens

    def _prefill(self, tickets: list[Ticket]) -> list[Event]:
        started = time.perf_counter()
        events: list[Event] = []
        cancelled = [t for t in tickets if t.cancelled]
        tickets = [t for t in tickets if not t.cancelled]
        events += [Event(t, None, "cancelled") for t in cancelled]
        if not tickets:
            return events
        batch, logits = RunningBatch.prefill(self.model, [t.prompt for t in tickets],
                                             self.pad_token_id)
        device = self.model.device
        choosers = [Chooser(t.sampling, device) for t in tickets]
        histories = [list(t.prompt) for t in tickets]
        tokens = choose_tokens(logits, choosers, histories)
        batch.push(tokens)
        if self._batch is None:
            self._batch = batch
        else:
            self._batch.extend(batch)
        self._rows += tickets
        self._choosers += choosers
        self._histories += histories
        self.stats["prefills"] += 1
        self.stats["sequences"] += len(tickets)
        self.stats["prefill_s"] += time.perf_counter() - started
        first = len(self._rows) - len(tickets)
        return events + self._record(tokens, range(first, len(self._rows)))

    def _step(self) -> list[Event]:
        assert self._batch is not None
        started = time.perf_counter()
        logits = self._batch.step(self.model)
        tokens = choose_tokens(logits, self._choosers, self._histories)
        self._batch.push(tokens)
        self.stats["steps"] += 1
        self.stats["max_rows"] = max(self.stats["max_rows"], len(self._rows))
        self.stats["max_cache_tokens"] = max(self.stats["max_cache_tokens"],
                                             self._batch.rows * self._batch.width)
        self.stats["step_s"] += time.perf_counter() - started
        return self._record(tokens, range(len(self._rows)))

    def _record(self, tokens: list[int], rows: range) -> list[Event]:
        """The events of ``rows`` (``tokens`` chosen for them), then drop the rows that
        ended: at EOS, at their length, or cancelled (their token is not delivered)."""
        events, ended = [], set()
        for row in rows:
            ticket, token = self._rows[row], tokens[row - rows.start]
            if ticket.cancelled:
                events.append(Event(ticket, None, "cancelled"))
                self.stats["cancelled"] += 1
                ended.add(row)
                continue
            ticket.generated += 1
            self._histories[row].append(token)
            reason = "stop" if token in self.eos else (
                "length" if ticket.remaining <= 0 else None)
            events.append(Event(ticket, token, reason))
            if reason:
                ended.add(row)
        self.stats["tokens"] += sum(1 for e in events if e.token is not None)
        if ended:
            self._drop([i for i in range(len(self._rows)) if i not in ended])
        return events

    def _drop(self, keep: list[int]) -> None:
        if not keep:
            self._reset()
            return
        assert self._batch is not None
        self._batch.keep(keep)
        self._rows = [self._rows[i] for i in keep]
        self._choosers = [self._choosers[i] for i in keep]
        self._histories = [self._histories[i] for i in keep]

    def _reset(self) -> None:
        self._batch, self._rows, self._choosers, self._histories = None, [], [], []
