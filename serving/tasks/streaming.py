"""Token-by-token answers of a generation: TGI-style events, cut at stop sequences."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the earliest occurrence of any of ``stop`` (excluded)."""
    cut = min((index for index in (text.find(s) for s in stop) if index >= 0), default=-1)
    return text if cut < 0 else text[:cut]


def _held_back(text: str, stop: Sequence[str]) -> int:
    """How many trailing characters of ``text`` could start a stop sequence."""
    longest = 0
    for s in stop:
        for size in range(min(len(s) - 1, len(text)), longest, -1):
            if text.endswith(s[:size]):
                longest = size
                break
    return longest



class TokenStreamer:
    """A ``generate()`` streamer turning each new token into one TGI-style event.

    Text is emitted only once it is final: not ending in an incomplete UTF-8 character
    and not possibly the start of a stop sequence. The last event carries the answer, so
    each event waits for the next token unless the caller says which token is the last
    (``add(token, last=...)``), as continuous batching can.
    """

    def __init__(self, tokenizer: Any, stop: Sequence[str], emit: Callable[[dict], None],
                 cancelled: threading.Event) -> None:
        self.tokenizer, self.stop, self.emit, self.cancelled = tokenizer, stop, emit, cancelled
        self.ids: list[int] = []
        self.sent = 0
        self.pending: dict | None = None
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        """``generate()``'s streamer hook: the prompt first, then each new token."""
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        if not self.cancelled.is_set():
            self.add(int(value.reshape(-1)[0]))

    def add(self, token: int, last: bool | None = None) -> None:
        """One new token: its event (sets ``cancelled`` once a stop sequence shows). With
        ``last`` known (True or False), a token that is not the last is emitted at once;
        otherwise its event waits for the next token or :meth:`finish`."""
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        cut = cut_at_stop(text, self.stop)
        if len(cut) < len(text):  # a stop sequence appeared: nothing more to say
            self.cancelled.set()
            safe = len(cut)
        elif text.endswith("\ufffd"):
            safe = self.sent
        else:
            safe = len(text) - _held_back(text, self.stop)
        piece = text[self.sent : max(safe, self.sent)]
        self.sent = max(safe, self.sent)
        event = {"index": len(self.ids), "token": {
            "id": token, "text": piece, "special": token in self.tokenizer.all_special_ids,
        }, "generated_text": None, "details": None}
        if last is False and not self.cancelled.is_set():
            self._push(None)
            self.emit(event)
        else:
            self._push(event)

    def end(self) -> None:
        pass

    def _push(self, event: dict | None) -> None:
        if self.pending is not None:
            self.emit(self.pending)
        self.pending = event

    def finish(self, answer: dict) -> None:
        """Send the last token's event with what is left of the text and the ``answer``
        (its ``generated_text`` and ``details``)."""
        event = self.pending or {"index": 0, "token": {"id": None, "text": "", "special": True},
                                 "generated_text": None, "details": None}
        new_text = cut_at_stop(self.tokenizer.decode(self.ids, skip_special_tokens=True),
                               self.stop)
        event["token"]["text"] += new_text[self.sent :]
        event["generated_text"] = answer["generated_text"]
        event["details"] = answer.get("details")
        self.pending = None
        self.emit(event)


async def events_from_thread(
    run: Callable[[Callable[[dict], None], threading.Event], None], name: str,
) -> AsyncIterator[dict]:
    """What ``run(emit, cancelled)`` emits in a thread of its own, as it emits it; an
    exception it raises reaches the consumer. Leaving the iteration sets ``cancelled``."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    cancelled = threading.Event()
    done = object()

    def emit(event: dict) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, event)

    def target() -> None:
        try:
            run(emit, cancelled)
        except Exception as exc:  # delivered to the consumer
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, done)

    threading.Thread(target=target, name=name, daemon=True).start()
    try:
        while (event := await queue.get()) is not done:
            if isinstance(event, Exception):
                raise event
            yield event
    finally:
        cancelled.set()  # the client went away or generation ended: stop generating
