"""Rerank dialects: Cohere's ``POST /v1/rerank`` (which Jina's and vLLM's clients call too)
and ``POST /v2/rerank``, and vLLM's ``POST /score`` (also ``/v1/score``).

Each ranks with TEI's rerank logic (``serving.tei``) through the ingress core, on a
cross-encoder or a text-ranking view; ``serving.rerank_compat`` translates the dialects.
"""

import asyncio
from typing import Any

from deployments.api.common import ERRORS, OPENAI_ERRORS, IngressDep, new_router
from deployments.http import FastJSONResponse
from serving import rerank_compat, tei
from serving.errors import InvalidInputError, ModelNotFoundError
from serving.schemas.rerank import (
    RerankRequest,
    RerankResponse,
    RerankV2Request,
    ScoreRequest,
    ScoreResponse,
)

router = new_router()


async def _labels(endpoint: Any) -> int | None:
    """A classifier's number of labels (None for other tasks)."""
    if endpoint.task.name != "text-classification":
        return None
    return len((await endpoint.pipeline.details()).get("id2label", {}))


async def ranker(ingress: Any, name: str | None, route: str) -> Any:
    """The endpoint that ranks for ``route``: model ``name``, or without one the first
    served model that reranks.

    Raises:
        ModelNotFoundError: for an unknown model, or when no served model reranks.
        WrongModelKindError: when model ``name`` cannot rerank.
    """
    if name is not None:
        endpoint = ingress.endpoint(name)
        rerank_compat.check_ranker(endpoint.name, endpoint.task.name, await _labels(endpoint),
                                   route)
        return endpoint
    for candidate in ingress.endpoint_names():
        endpoint = ingress.endpoint(candidate)
        if rerank_compat.reranks(endpoint.task.name, await _labels(endpoint)):
            return endpoint
    raise ModelNotFoundError(f"no served model reranks; {route} needs {rerank_compat.NEEDED}")


def _check_count(endpoint: Any, texts: int, queries: int, what: str) -> None:
    """Refuses more texts than the model takes per request (a view embeds the queries too)."""
    limit = endpoint.pipeline.spec.max_inputs_per_request
    read = texts + (queries if endpoint.task.name == "text-ranking" else 0)
    if read > limit:
        raise InvalidInputError(
            f"{what}: {texts} texts, more than model {endpoint.name!r} takes in one request "
            f"({limit}; a text-ranking view counts each query as one more)")


async def _rank(ingress: Any, endpoint: Any, query: str, texts: list[str]) -> list[dict]:
    """TEI's rerank entries ``{index, score}`` of ``texts`` for ``query``, best first."""
    body = rerank_compat.ranking_request(query, texts)
    task = endpoint.task.name
    return tei.rerank_answer(await ingress.answer(endpoint.name, tei.rerank_request(body, task)),
                             body, task)


async def rerank(ingress: Any, request: RerankRequest | RerankV2Request, route: str,
                 version: str) -> dict[str, Any]:
    """The answer of a ``/v1/rerank`` or ``/v2/rerank`` request."""
    endpoint = await ranker(ingress, request.model, route)
    fields = getattr(request, "rank_fields", None)
    texts = rerank_compat.document_texts(request.documents, fields)
    _check_count(endpoint, len(texts), 1, "documents")
    ranks, tokens = await asyncio.gather(
        _rank(ingress, endpoint, request.query, texts),
        endpoint.pipeline.processed_tokens([request.query, *texts]),
    )
    wanted = request.return_documents
    wanted = (version == "1") if wanted is None else wanted  # Jina's default; Cohere v2's
    found = rerank_compat.results(ranks, request.documents, request.top_n, wanted)
    return rerank_compat.rerank_response(found, endpoint.name, tokens, version)


@router.post("/v1/rerank", responses=OPENAI_ERRORS, response_model=RerankResponse,
             summary="Rerank documents (Cohere v1, Jina and vLLM format)")
async def rerank_v1(request: RerankRequest, ingress: IngressDep) -> FastJSONResponse:
    return FastJSONResponse(await rerank(ingress, request, "/v1/rerank", "1"))


@router.post("/v2/rerank", responses=ERRORS, response_model=RerankResponse,
             summary="Rerank documents (Cohere v2 format)")
async def rerank_v2(request: RerankV2Request, ingress: IngressDep) -> FastJSONResponse:
    return FastJSONResponse(await rerank(ingress, request, "/v2/rerank", "2"))


async def score(ingress: Any, request: ScoreRequest, route: str) -> dict[str, Any]:
    """The answer of a ``/score`` request: each pair ranked in a request per distinct
    ``text_1`` (the ingress merges them into one batch)."""
    endpoint = await ranker(ingress, request.model, route)
    pairs = rerank_compat.score_pairs(request.text_1, request.text_2)
    groups = rerank_compat.score_groups(pairs)
    _check_count(endpoint, len(pairs), len(groups), "text_2")
    seconds = [second for _, second in pairs]
    ranks = asyncio.gather(*(_rank(ingress, endpoint, first, [seconds[i] for i in indices])
                             for first, indices in groups.items()))
    answers, tokens = await asyncio.gather(
        ranks, endpoint.pipeline.processed_tokens([*groups, *seconds]))
    scores = rerank_compat.pair_scores(groups, list(answers))
    return rerank_compat.score_response(scores, endpoint.name, tokens)


@router.post("/score", responses=ERRORS, response_model=ScoreResponse,
             summary="Score text pairs (vLLM format)")
async def score_root(request: ScoreRequest, ingress: IngressDep) -> FastJSONResponse:
    return FastJSONResponse(await score(ingress, request, "/score"))


@router.post("/v1/score", responses=OPENAI_ERRORS, response_model=ScoreResponse,
             summary="Score text pairs (vLLM format)")
async def score_v1(request: ScoreRequest, ingress: IngressDep) -> FastJSONResponse:
    return FastJSONResponse(await score(ingress, request, "/v1/score"))
