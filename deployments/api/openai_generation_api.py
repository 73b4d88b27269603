"""OpenAI's text-generation API: ``POST /v1/completions`` and ``POST /v1/chat/completions``
for every served text-generation model, answered whole or as Server-Sent Events.

The conversions are pure (``serving.openai_generation``, ``serving.openai_streams``); here
the requests reach the models: completions through the ingress's shared core
(:meth:`Ingress.answer`, coalesced and metered like the Inference API), chats and streams
through the model's pipeline.
"""

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import aclosing
from typing import Any, TypeVar

from fastapi.responses import StreamingResponse

from deployments.api.common import OPENAI_ERRORS, IngressDep, new_router, validated
from deployments.http import FastJSONResponse, as_serving_error
from serving.errors import InvalidInputError, openai_answer
from serving.openai_generation import (
    Generated,
    chat_messages,
    chat_response,
    choice_parameters,
    completion_response,
    generation_parameters,
    prompt_texts,
    renamed,
    response_ids,
)
from serving.openai_streams import ChunkStream, merged, started
from serving.schemas.openai_generation import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
)

router = new_router()
T = TypeVar("T")

# Our messages' field names as each route's request names them.
_COMPLETION_NAMES = {"parameters.max_new_tokens": "max_tokens", "inputs": "prompt"}
_CHAT_NAMES = {"parameters.max_new_tokens": "max_completion_tokens", "inputs": "messages"}


@router.post("/v1/completions", responses=OPENAI_ERRORS, response_model=CompletionResponse,
             summary="Continue prompts (OpenAI format; stream: Server-Sent Events)")
async def openai_completions(request: CompletionRequest, ingress: IngressDep) -> Any:
    if request.stream:
        return await _stream_completions(ingress, request)
    return FastJSONResponse((await completions(ingress, request)).model_dump(mode="json"))


@router.post("/v1/chat/completions", responses=OPENAI_ERRORS,
             response_model=ChatCompletionResponse,
             summary="Answer a conversation (OpenAI format; stream: Server-Sent Events)")
async def openai_chat_completions(request: ChatCompletionRequest, ingress: IngressDep) -> Any:
    if request.stream:
        return await _stream_chat(ingress, request)
    return FastJSONResponse((await chat_completions(ingress, request)).model_dump(mode="json"))


def _generation_endpoint(ingress: Any, model: str, route: str) -> Any:
    endpoint = ingress.endpoint(model)
    if endpoint.task.name != "text-generation":
        raise InvalidInputError(f"model: {model!r} is a {endpoint.task.name} model; {route} "
                                "needs a text-generation model")
    return endpoint


async def _renamed(work: Awaitable[T], names: Mapping[str, str]) -> T:
    """``await work``, its errors naming the OpenAI request's fields."""
    try:
        return await work
    except Exception as exc:
        raise renamed(as_serving_error(exc), names) from None


async def completions(ingress: Any, request: CompletionRequest | dict) -> CompletionResponse:
    """The answer to a completion request (the route's, and the handle API's).

    Raises:
        ServingError: an unknown or non-text-generation model, invalid input...
    """
    if isinstance(request, dict):
        request = validated(CompletionRequest, request, "")
    endpoint = _generation_endpoint(ingress, request.model, "/v1/completions")
    prompts = prompt_texts(request, endpoint.pipeline.spec.max_inputs_per_request)
    choices = choice_parameters(generation_parameters(request), request.n)
    answers = await _renamed(asyncio.gather(*(
        ingress.answer(request.model, {"inputs": prompts,
                                       "parameters": params.model_dump(exclude_defaults=True)})
        for params in choices
    )), _COMPLETION_NAMES)
    outputs = [[Generated.from_answer(item) for (item,) in answer] for answer in answers]
    ids = response_ids("cmpl", request.model, int(time.time()))
    return completion_response(ids, prompts, outputs, request.echo)


async def chat_completions(ingress: Any, request: ChatCompletionRequest | dict
                           ) -> ChatCompletionResponse:
    """The answer to a chat request (the route's, and the handle API's).

    Raises:
        ServingError: an unknown model, one without a chat template, invalid input...
    """
    if isinstance(request, dict):
        request = validated(ChatCompletionRequest, request, "")
    endpoint = _generation_endpoint(ingress, request.model, "/v1/chat/completions")
    messages = chat_messages(request)
    choices = choice_parameters(generation_parameters(request), request.n)
    answers = await _renamed(asyncio.gather(*(
        endpoint.pipeline.chat(messages, params) for params in choices
    )), _CHAT_NAMES)
    ids = response_ids("chatcmpl", request.model, int(time.time()))
    return chat_response(ids, [Generated.from_answer(answer) for answer in answers])


async def _stream_completions(ingress: Any, request: CompletionRequest) -> StreamingResponse:
    endpoint = _generation_endpoint(ingress, request.model, "/v1/completions")
    prompts = prompt_texts(request, endpoint.pipeline.spec.max_inputs_per_request)
    choices = choice_parameters(generation_parameters(request), request.n)
    chunks = ChunkStream(response_ids("cmpl", request.model, int(time.time())), chat=False,
                         choices=len(prompts) * request.n, n=request.n,
                         include_usage=request.include_usage(),
                         echo=prompts if request.echo else ())
    # Choice p * n + j: prompt p with choice j's parameters.
    return await _sse([endpoint.pipeline.stream(prompt, params)
                       for prompt in prompts for params in choices],
                      chunks, _COMPLETION_NAMES)


async def _stream_chat(ingress: Any, request: ChatCompletionRequest) -> StreamingResponse:
    endpoint = _generation_endpoint(ingress, request.model, "/v1/chat/completions")
    messages = chat_messages(request)
    choices = choice_parameters(generation_parameters(request), request.n)
    chunks = ChunkStream(response_ids("chatcmpl", request.model, int(time.time())),
                         chat=True, choices=request.n, include_usage=request.include_usage())
    return await _sse([endpoint.pipeline.stream_chat(messages, params) for params in choices],
                      chunks, _CHAT_NAMES)


async def _sse(streams: list[Any], chunks: ChunkStream, names: Mapping[str, str]
               ) -> StreamingResponse:
    """Server-Sent Events of the choices' token ``streams``, ended by ``data: [DONE]``.

    Errors found before any token (validation, the model window, no chat template) answer
    with a JSON error; later ones arrive as an OpenAI error event before ``[DONE]``.
    """
    ready = await _renamed(started(streams), names)

    async def events() -> AsyncIterator[str]:
        try:
            for chunk in chunks.opening():
                yield _event(chunk)
            async with aclosing(merged(ready)) as pairs:  # a client gone: stop them all
                async for index, event in pairs:
                    for chunk in chunks.chunks(index, event):
                        yield _event(chunk)
            for chunk in chunks.closing():
                yield _event(chunk)
        except Exception as exc:  # the status line is sent: report in the stream
            _, body = openai_answer(renamed(as_serving_error(exc), names))
            yield _event(body)
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


def _event(data: dict) -> str:
    return f"data: {json.dumps(data)}\n\n"
