"""The Hugging Face Inference API: ``POST /models/{name}`` with ``{"inputs", "parameters"}``,
and Server-Sent Events for streamed text generation (TGI style)."""

import json
from typing import Any

from fastapi import Body, Header
from fastapi.responses import StreamingResponse

from deployments.api.common import ERRORS, IngressDep, new_router
from deployments.http import FastJSONResponse, as_serving_error
from serving.errors import InvalidInputError
from serving.schemas.inference_api import EXAMPLES, InferenceRequest
from serving.tasks.zero_shot import as_label_list, wants_label_list

router = new_router()


@router.post("/models/{name:path}", responses=ERRORS,
             summary="Run a model (Inference API payload)")
async def predict(
    name: str, ingress: IngressDep,
    request: InferenceRequest = Body(openapi_examples=EXAMPLES),
    user_agent: str | None = Header(None, include_in_schema=False),
) -> Any:
    if request.stream or request.parameters.get("stream") is True:
        return await _stream(ingress, name, request)
    answer = await ingress.answer(name, request)
    # huggingface_hub's InferenceClient reads zero-shot answers as [{label, score}].
    if (ingress.endpoint(name).task.name == "zero-shot-classification"
            and wants_label_list(user_agent)):
        answer = as_label_list(answer)
    return FastJSONResponse(answer)


async def _stream(ingress: Any, name: str, request: InferenceRequest) -> StreamingResponse:
    """Server-Sent Events of a text-generation request, one per token.

    Errors found before the first token (validation, window) answer as JSON; later ones
    arrive as a last ``{"error", "error_type"}`` event.
    """
    endpoint = ingress.endpoint(name)
    if not endpoint.task.streams:
        raise InvalidInputError(f"model {name!r} ({endpoint.task.name}) cannot stream; "
                                "streaming is for text-generation models")
    params = ingress.parameters(endpoint, request)
    raw = request.raw_inputs()
    if isinstance(raw, list) and len(raw) != 1:
        raise InvalidInputError("inputs: a streamed request generates from one prompt")
    inputs = endpoint.task.parse_inputs(raw, 1, params)
    events = endpoint.pipeline.stream(inputs.texts[0], params)
    first = await events.__anext__()

    async def sse():
        try:
            yield f"data: {json.dumps(first)}\n\n"
            async for event in events:
                yield f"data: {json.dumps(event)}\n\n"
        except Exception as exc:  # the status line is sent: report in the stream
            yield f"data: {json.dumps(as_serving_error(exc).to_body())}\n\n"

    return StreamingResponse(sse(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})
