"""The asyncio face of a :class:`~serving.decoding.scheduler.ContinuousBatcher`: each
sequence is an async iterator of its token ids (no Ray)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

from serving.decoding.sampling import Sampling
from serving.decoding.scheduler import ContinuousBatcher, Event, Limits
from serving.errors import BackendError


class AsyncDecoder:
    """Starts the decoding loop; :meth:`tokens` is called from the event loop it was
    created in, which receives each step's events in one callback."""

    def __init__(self, model: Any, pad_token_id: int, eos_token_ids: Sequence[int],
                 limits: Limits, lock: threading.Lock | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._queues: dict[int, asyncio.Queue[Event]] = {}
        self.batcher = ContinuousBatcher(model, self._sink, pad_token_id, eos_token_ids,
                                         limits, lock)
        self.batcher.start()

    def _sink(self, events: list[Event]) -> None:  # the decoding thread
        self._loop.call_soon_threadsafe(self._dispatch, events)

    def _dispatch(self, events: list[Event]) -> None:
        for event in events:
            queue = self._queues.get(event.ticket.id)
            if queue is not None:
                queue.put_nowait(event)

    async def tokens(self, prompt: Sequence[int], sampling: Sampling
                     ) -> AsyncIterator[tuple[int, bool]]:
        """The ids ``prompt`` generates, each with whether it is the last, ending at EOS
        (included) or max_new_tokens.
        Leaving the iteration early (a client gone, a stop sequence) frees the sequence's
        row at the next step.

        Raises:
            InvalidInputError, OverloadedError: as ``ContinuousBatcher.submit``.
            BackendError: the model failed while decoding it.
        """
        ticket = self.batcher.submit(prompt, sampling)
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._queues[ticket.id] = queue  # before any dispatch: both run on this loop
        try:
            while True:
                event = await queue.get()
                if event.error is not None:
                    raise BackendError(f"generation failed: {event.error}")
                if event.token is not None:
                    yield event.token, event.finish_reason is not None
                if event.finish_reason is not None:
                    return
        finally:
            ticket.cancel()
            self._queues.pop(ticket.id, None)

    def close(self) -> None:
        self.batcher.stop()
