"""OpenAI's API: ``POST /v1/embeddings`` and ``GET /v1/models``."""

import asyncio
from typing import Any

from deployments.api.common import ERRORS, IngressDep, new_router, validated
from deployments.http import FastJSONResponse
from serving.errors import InvalidInputError
from serving.openai_compat import embeddings_response, input_texts, input_token_ids
from serving.schemas.openai import EmbeddingsRequest, EmbeddingsResponse, ModelCard, ModelList

router = new_router()


@router.post("/v1/embeddings", responses=ERRORS, summary="Embeddings (OpenAI format)",
             response_model=EmbeddingsResponse)
async def openai_embeddings(request: EmbeddingsRequest, ingress: IngressDep) -> Any:
    return FastJSONResponse((await embeddings(ingress, request)).model_dump())


@router.get("/v1/models", summary="List served models (OpenAI format)")
def models(ingress: IngressDep) -> ModelList:
    return model_list(ingress)


async def embeddings(ingress: Any, request: EmbeddingsRequest | dict) -> EmbeddingsResponse:
    """The embeddings of an OpenAI request (the route's and the handle API's)."""
    if isinstance(request, dict):
        request = validated(EmbeddingsRequest, request, "")
    endpoint = ingress.endpoint(request.model)
    if endpoint.task.name != "feature-extraction":
        raise InvalidInputError(
            f"model: {request.model!r} is a {endpoint.task.name} model; /v1/embeddings needs "
            "a feature-extraction model"
        )
    pipeline = endpoint.pipeline
    texts = input_texts(request)
    if texts is None:
        ids = input_token_ids(request, pipeline.spec.max_inputs_per_request)
        vectors, tokens = await pipeline.embed_ids(ids, endpoint.task.parameters())
        return embeddings_response(vectors, tokens, request)
    vectors, tokens = await asyncio.gather(
        ingress.answer(request.model, {"inputs": texts}), pipeline.processed_tokens(texts),
    )
    return embeddings_response(vectors, tokens, request)


def model_list(ingress: Any) -> ModelList:
    """Every served model and view, as OpenAI lists models (plus the task)."""
    cards = []
    for name in ingress.endpoint_names():
        endpoint = ingress.endpoint(name)
        spec = endpoint.pipeline.spec
        cards.append(ModelCard(id=name, created=ingress.started, task=endpoint.task.name,
                               model=spec.model, pipeline=spec.name))
    return ModelList(data=cards)
