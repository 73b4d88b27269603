"""Unit tests of OpenAI's streamed answers (serving.openai_streams): the chunks of token
events, and merging several event streams."""

from __future__ import annotations

import asyncio
import json

import pytest

from serving.openai_generation import ResponseIds
from serving.openai_streams import ChunkStream, merged, started

IDS = ResponseIds("chatcmpl-1", 1700000000, "gpt2")


def _event(text: str, details: dict | None = None) -> dict:
    return {"index": 1, "token": {"id": 5, "text": text, "special": False},
            "generated_text": None if details is None else "done", "details": details}


DETAILS = {"finish_reason": "eos_token", "generated_tokens": 2, "prompt_tokens": 4}


def test_chat_chunks_role_then_content_then_finish_then_usage():
    stream = ChunkStream(IDS, chat=True, choices=1, include_usage=True)
    chunks = [*stream.opening(), *stream.chunks(0, _event("Hel")),
              *stream.chunks(0, _event("")), *stream.chunks(0, _event("lo", DETAILS)),
              *stream.closing()]
    deltas = [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"])
              for c in chunks if c["choices"]]
    assert deltas == [({"role": "assistant", "content": ""}, None), ({"content": "Hel"}, None),
                      ({"content": "lo"}, None), ({}, "stop")]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == IDS.id for c in chunks)
    assert [c["usage"] for c in chunks[:-1]] == [None] * 4
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}


def test_completion_chunks_echo_and_count_each_prompt_once():
    stream = ChunkStream(IDS, chat=False, choices=4, n=2, echo=["A", "B"])
    assert [(c["choices"][0]["index"], c["choices"][0]["text"]) for c in stream.opening()] == [
        (0, "A"), (1, "A"), (2, "B"), (3, "B")]
    chunks = stream.chunks(3, _event("x", {**DETAILS, "finish_reason": "length"}))
    assert [c["choices"][0] for c in chunks] == [
        {"index": 3, "text": "x", "finish_reason": None, "logprobs": None},
        {"index": 3, "text": "", "finish_reason": "length", "logprobs": None}]
    assert "usage" not in chunks[0] and stream.closing() == []
    for index in (0, 1, 2):
        stream.chunks(index, _event("", DETAILS))
    assert stream._prompt_tokens == {0: 4, 1: 4}


async def _items(items, fail: Exception | None = None, closed: list | None = None):
    try:
        for item in items:
            await asyncio.sleep(0)
            yield item
        if fail is not None:
            raise fail
    finally:
        if closed is not None:
            closed.append(items)


def test_merged_gives_every_item_with_its_stream():
    async def run():
        streams = await started([_items([1, 2, 3]), _items(["a", "b"])])
        return [pair async for pair in merged(streams)]

    pairs = asyncio.run(run())
    assert [item for index, item in pairs if index == 0] == [1, 2, 3]
    assert [item for index, item in pairs if index == 1] == ["a", "b"]


def test_an_error_before_the_first_item_raises_from_started_and_closes_the_others():
    closed: list = []

    async def run():
        await started([_items([1, 2], closed=closed), _items([], ValueError("bad prompt"))])

    with pytest.raises(ValueError, match="bad prompt"):
        asyncio.run(run())
    assert closed == [[1, 2]]


def test_a_later_error_ends_the_merge_and_closes_every_stream():
    closed: list = []

    async def run():
        streams = await started([_items(list(range(100)), closed=closed),
                                 _items([1], RuntimeError("replica died"), closed=closed)])
        seen = []
        with pytest.raises(RuntimeError, match="replica died"):
            async for pair in merged(streams):
                seen.append(pair)
        return seen

    assert (1, 1) in asyncio.run(run())
    assert len(closed) == 2


def test_an_error_after_the_first_chunk_is_an_openai_error_event_then_done():
    """The route's Server-Sent Events (deployments/api/openai_generation_api.py) on streams
    that fail after their first token: the status line is sent, so the error is an event."""
    from deployments.api.openai_generation_api import _sse
    from serving.errors import InvalidInputError

    async def failing():
        yield _event("Hel")
        raise InvalidInputError("parameters.max_new_tokens: too many")

    async def run():
        response = await _sse([failing()], ChunkStream(IDS, chat=True, choices=1),
                              {"parameters.max_new_tokens": "max_completion_tokens"})
        return [part async for part in response.body_iterator]

    events = asyncio.run(run())
    assert events[-1] == "data: [DONE]\n\n"
    assert json.loads(events[-2][len("data: "):]) == {"error": {
        "message": "max_completion_tokens: too many", "type": "invalid_request_error",
        "param": "max_completion_tokens", "code": None}}
    assert [json.loads(e[len("data: "):])["choices"][0]["delta"] for e in events[:-2]] == [
        {"role": "assistant", "content": ""}, {"content": "Hel"}]
