"""OpenAI's API: ``POST /v1/embeddings``, ``GET /v1/models`` and ``GET /v1/models/{id}``."""

import asyncio
from typing import Any

from deployments.api.common import OPENAI_ERRORS, IngressDep, new_router, validated
from deployments.http import FastJSONResponse
from serving.errors import InvalidInputError, ModelNotFoundError
from serving.openai_compat import (
    check_options,
    embeddings_response,
    input_texts,
    input_token_ids,
)
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


@router.get("/v1/models/{model_id:path}", responses=OPENAI_ERRORS, response_model=ModelCard,
            summary="One served model (OpenAI format)", response_model_exclude_none=True)
async def model(model_id: str, ingress: IngressDep) -> ModelCard:
    """The card of one served model, view, pool or pool member (``pool/member``), as
    ``GET /v1/models`` lists it; 404 (``model_not_found``) for any other id."""
    for card in (await model_list(ingress)).data:
        if card.id == model_id:
            return card
    raise ModelNotFoundError(f"model {model_id!r} is not served (GET /v1/models lists them)")


TOKEN_IDS_REFUSED = (
    "input: token ids are not accepted here: clients of OpenAI's API send ids of OpenAI's "
    "vocabulary (LangChain's OpenAIEmbeddings does unless check_embedding_ctx_length=False), "
    "which this model would read as other words. Send texts, or set ingress.openai_token_ids: "
    "true to send ids of the model's own tokenizer."
)


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
        if not ingress.config.ingress.openai_token_ids:
            raise InvalidInputError(TOKEN_IDS_REFUSED)
        ids = input_token_ids(request, pipeline.spec.max_inputs_per_request)
        check_options(request, pipeline.spec, len(ids))
        vectors, tokens = await pipeline.embed_ids(ids, endpoint.task.parameters())
        return embeddings_response(vectors, tokens, request)
    check_options(request, pipeline.spec, len(texts))
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
