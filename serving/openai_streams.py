"""OpenAI's streamed answers: the generator's token events as ``text_completion`` or
``chat.completion.chunk`` chunks, and several event streams merged into one (no Ray, no
FastAPI).

A choice's chunks: (chat) a first delta with the role; its text as it comes; a last chunk
with an empty delta and the finish reason. With ``stream_options.include_usage`` every
chunk carries ``usage: null`` and one more chunk, without choices, carries the usage.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TypeVar

from serving.openai_generation import Generated, ResponseIds, usage
from serving.schemas.openai_generation import (
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatDelta,
    CompletionChoice,
    CompletionChunk,
    FinishReason,
)

T = TypeVar("T")


class ChunkStream:
    """The chunks (JSON-ready dicts) of one streamed answer of ``choices`` choices.

    Args:
        ids: the response's id, time and model name.
        chat: ``chat.completion.chunk`` chunks, else ``text_completion`` ones.
        n: choices per prompt: choice ``i`` answers prompt ``i // n``.
        include_usage: every chunk has ``usage`` and a last one carries it.
        echo: per prompt, text sent before its choices' (completions' ``echo``).
    """

    def __init__(self, ids: ResponseIds, chat: bool, choices: int, n: int = 1,
                 include_usage: bool = False, echo: Sequence[str] = ()) -> None:
        self.ids, self.chat, self.choices, self.n = ids, chat, choices, n
        self.include_usage = include_usage
        self.echo = echo
        self._prompt_tokens: dict[int, int] = {}
        self._completion_tokens = 0

    def opening(self) -> list[dict[str, Any]]:
        """The chunks before any token: the role of each chat choice, or the echoed prompts."""
        if self.chat:
            return [self._chunk(i, role=True) for i in range(self.choices)]
        return [self._chunk(i, text=self.echo[i // self.n]) for i in range(self.choices)
                if self.echo and self.echo[i // self.n]]

    def chunks(self, index: int, event: dict[str, Any]) -> list[dict[str, Any]]:
        """The chunks of choice ``index``'s next token event (none when it holds no new
        text); its last event (``details`` set) also ends the choice."""
        text = event["token"]["text"]
        chunks = [self._chunk(index, text=text)] if text else []
        if event.get("details") is not None:
            generated = Generated.from_answer(event)
            self._prompt_tokens[index // self.n] = generated.prompt_tokens
            self._completion_tokens += generated.completion_tokens
            chunks.append(self._chunk(index, text="", finish_reason=generated.finish_reason))
        return chunks

    def closing(self) -> list[dict[str, Any]]:
        """The usage chunk, when asked for."""
        if not self.include_usage:
            return []
        counts = usage(sum(self._prompt_tokens.values()), self._completion_tokens)
        kind = ChatCompletionChunk if self.chat else CompletionChunk
        return [kind(id=self.ids.id, created=self.ids.created, model=self.ids.model,
                     choices=[], usage=counts).model_dump(mode="json")]

    def _chunk(self, index: int, text: str = "", role: bool = False,
               finish_reason: FinishReason | None = None) -> dict[str, Any]:
        chunk: ChatCompletionChunk | CompletionChunk
        if self.chat:
            delta = ChatDelta(role="assistant", content="") if role else ChatDelta(
                content=text or None)
            chunk = ChatCompletionChunk(
                id=self.ids.id, created=self.ids.created, model=self.ids.model,
                choices=[ChatChunkChoice(index=index, delta=delta, finish_reason=finish_reason)])
        else:
            chunk = CompletionChunk(
                id=self.ids.id, created=self.ids.created, model=self.ids.model,
                choices=[CompletionChoice(index=index, text=text, finish_reason=finish_reason)])
        return chunk.model_dump(mode="json", exclude=None if self.include_usage else {"usage"})


async def started(streams: Sequence[AsyncIterator[T]]) -> list[AsyncIterator[T]]:
    """``streams`` once each has given its first item (so that errors found before any
    item raise here), each still giving every item.

    Raises:
        Exception: the first stream's error; every stream is then closed.
    """
    firsts = [asyncio.ensure_future(anext(stream)) for stream in streams]
    try:
        items = await asyncio.gather(*firsts)
    except BaseException:
        for first in firsts:
            first.cancel()
        await asyncio.gather(*firsts, return_exceptions=True)
        await close_all(streams)
        raise
    return [_prepended(item, stream) for item, stream in zip(items, streams, strict=True)]


async def _prepended(first: T, stream: AsyncIterator[T]) -> AsyncIterator[T]:
    try:
        yield first
        async for item in stream:
            yield item
    finally:  # closed early (the client left, another stream failed): stop this one too
        await close_all([stream])


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_DONE = object()


async def merged(streams: Sequence[AsyncIterator[T]]) -> AsyncIterator[tuple[int, T]]:
    """``(stream index, item)`` of every item of ``streams`` as they come; the first error
    of any stream is raised, and ending early closes every stream."""
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[T]) -> None:
        try:
            async for item in stream:
                await queue.put((index, item))
        except Exception as exc:
            await queue.put((index, _Failed(exc)))
        await queue.put((index, _DONE))

    tasks = [asyncio.ensure_future(pump(i, stream)) for i, stream in enumerate(streams)]
    try:
        running = len(tasks)
        while running:
            index, item = await queue.get()
            if item is _DONE:
                running -= 1
            elif isinstance(item, _Failed):
                raise item.error
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await close_all(streams)


async def close_all(streams: Sequence[Any]) -> None:
    """Close each stream: ``aclose()`` an async generator, ``cancel()`` a Ray response
    generator (which stops its generation on the replica)."""
    for stream in streams:
        with suppress(Exception):
            if hasattr(stream, "aclose"):
                await stream.aclose()
            elif hasattr(stream, "cancel"):
                stream.cancel()
