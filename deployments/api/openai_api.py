"""OpenAI's API: ``POST /v1/embeddings`` and ``GET /v1/models``."""

import asyncio
from typing import Any

from deployments.api.common import OPENAI_ERRORS, IngressDep, new_router, validated
from deployments.http import FastJSONResponse
from serving.errors import InvalidInputError
from serving.openai_compat import embeddings_response, input_texts, input_token_ids
from serving.schemas.openai import EmbeddingsRequest, EmbeddingsResponse, ModelCard, ModelList

router = new_router()


@router.post("/v1/embeddings", responses=OPENAI_ERRORS, summary="Embeddings (OpenAI format)",
             response_model=EmbeddingsResponse)
async def openai_embeddings(request: EmbeddingsRequest, ingress: IngressDep) -> Any:
    return FastJSONResponse((await embeddings(ingress, request)).model_dump())


@router.get("/v1/models", responses=OPENAI_ERRORS, summary="List served models (OpenAI format)",
            response_model=ModelList, response_model_exclude_none=True)
async def models(ingress: IngressDep) -> ModelList:
    return await model_list(ingress)


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


async def model_list(ingress: Any) -> ModelList:
    """Every served model and view, as OpenAI lists models (plus the task); a model pool,
    then each of its members with the replicas that hold it."""
    cards = []
    for name in ingress.endpoint_names():
        endpoint = ingress.endpoint(name)
        spec = endpoint.pipeline.spec
        cards.append(ModelCard(id=name, created=ingress.started, task=endpoint.task.name,
                               model=endpoint.pipeline.model_id, pipeline=spec.name))
    for name, pool in ingress.pools.items():
        members, where = await pool.listing()
        cards.append(ModelCard(id=name, created=ingress.started, task=pool.task.name,
                               pipeline=name, members=len(members)))
        cards += [ModelCard(id=f"{name}/{member}", created=ingress.started,
                            task=pool.task.name, model=member, pipeline=name,
                            loaded_on=where.get(member, [])) for member in members]
    return ModelList(data=cards)
