"""Text Embeddings Inference (TEI): ``/embed``, ``/similarity``, ``/predict``, ``/rerank``,
``/tokenize`` and ``/info``, each also as ``/models/{name}/...`` for one named model.

The routes are a table: per TEI route its request schema, answer model and the function
answering it; un-named routes answer for the first served model whose task answers the
route (``Task.tei_routes``).
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from deployments.api.common import ERRORS, IngressDep, new_router
from deployments.http import FastJSONResponse
from serving import tei
from serving.errors import InvalidInputError, ModelNotFoundError
from serving.schemas.tei import (
    TeiEmbedRequest,
    TeiInfo,
    TeiInfoList,
    TeiPredictRequest,
    TeiRerankRequest,
    TeiSimilarityRequest,
    TeiToken,
    TeiTokenizeRequest,
)
from serving.tasks.base import check_text

router = new_router()
VERSION = "0.1.0"


async def _embed(ingress: Any, endpoint: Any, body: TeiEmbedRequest) -> Any:
    return tei.embed_answer(await ingress.answer(endpoint.name, tei.embed_request(body)))


async def _similarity(ingress: Any, endpoint: Any, body: TeiSimilarityRequest) -> Any:
    return await ingress.answer(endpoint.name, tei.similarity_request(body))


async def _predict(ingress: Any, endpoint: Any, body: TeiPredictRequest) -> Any:
    requests, inputs, single = tei.predict_requests(body)
    answers = await asyncio.gather(*(ingress.answer(endpoint.name, r) for r in requests))
    return tei.predict_answer(answers, inputs, single)


async def _rerank(ingress: Any, endpoint: Any, body: TeiRerankRequest) -> Any:
    task = endpoint.task.name
    answer = await ingress.answer(endpoint.name, tei.rerank_request(body, task))
    return tei.rerank_answer(answer, body, task)


async def _tokenize(ingress: Any, endpoint: Any, body: TeiTokenizeRequest) -> Any:
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    where = "inputs" if isinstance(body.inputs, str) else "inputs[{}]"
    texts = [check_text(text, where.format(i)) for i, text in enumerate(texts)]
    limit = endpoint.pipeline.spec.max_inputs_per_request
    if not texts or len(texts) > limit:
        raise InvalidInputError(f"inputs: send 1 to {limit} texts, not {len(texts)}")
    return await endpoint.pipeline.token_details(texts, body.add_special_tokens)


Answer = Callable[[Any, Any, Any], Awaitable[Any]]
# route → (request body, answer model or None, what it does, the function answering it)
ROUTES: dict[str, tuple[type, Any, str, Answer]] = {
    "embed": (TeiEmbedRequest, list[list[float]], "Embeddings", _embed),
    "similarity": (TeiSimilarityRequest, list[float], "Sentence similarity", _similarity),
    "predict": (TeiPredictRequest, None, "Sequence classification", _predict),
    "rerank": (TeiRerankRequest, None, "Rerank texts for a query", _rerank),
    "tokenize": (TeiTokenizeRequest, list[list[TeiToken]], "Tokenize", _tokenize),
}


def _default_endpoint(ingress: Any, route: str) -> str:
    for name in ingress.endpoint_names():
        if route in ingress.endpoint(name).task.tei_routes:
            return name
    raise ModelNotFoundError(
        f"no served model answers /{route}; it needs a {' or '.join(tei.route_tasks(route))} "
        "model"
    )


async def _answer(ingress: Any, route: str, name: str | None, body: Any) -> FastJSONResponse:
    endpoint = ingress.endpoint(name or _default_endpoint(ingress, route))
    tei.check_route(route, endpoint.name, endpoint.task.name)
    return FastJSONResponse(await ROUTES[route][3](ingress, endpoint, body))


def _add_routes(route: str, body_type: type, answer_model: Any, summary: str) -> None:
    async def default_model(request: body_type, ingress: IngressDep) -> FastJSONResponse:  # type: ignore[valid-type]
        return await _answer(ingress, route, None, request)

    async def named_model(name: str, request: body_type,  # type: ignore[valid-type]
                          ingress: IngressDep) -> FastJSONResponse:
        return await _answer(ingress, route, name, request)

    router.post(f"/{route}", responses=ERRORS, summary=f"{summary} (TEI)",
                response_model=answer_model, name=f"tei_{route}")(default_model)
    router.post(f"/models/{{name:path}}/{route}", responses=ERRORS, response_model=answer_model,
                summary=f"{summary} with one model (TEI)", name=f"tei_{route}_model")(named_model)


for _route, (_body, _model, _summary, _) in ROUTES.items():
    _add_routes(_route, _body, _model, _summary)


@router.get("/info", response_model=TeiInfoList, summary="Served models' limits (TEI)")
async def info(ingress: IngressDep) -> FastJSONResponse:
    """TEI's fields for the first embedding model (or the first model), and every served
    model under ``models``."""
    names = ingress.endpoint_names()
    infos = await asyncio.gather(*(model_info(ingress, name) for name in names))
    models = dict(zip(names, infos, strict=True))
    embedders = [name for name in names if models[name]["task"] == "feature-extraction"]
    return FastJSONResponse({**models[(embedders or names)[0]], "models": models})


@router.get("/models/{name:path}/info", response_model=TeiInfo, responses=ERRORS,
            summary="One model's limits (TEI)")
async def info_model(name: str, ingress: IngressDep) -> FastJSONResponse:
    return FastJSONResponse(await model_info(ingress, name))


async def model_info(ingress: Any, name: str) -> dict:
    """TEI's ``/info`` of endpoint ``name``."""
    endpoint = ingress.endpoint(name)
    spec, task = endpoint.pipeline.spec, endpoint.task
    details = await endpoint.pipeline.details()
    window = details.get("max_input_length") or 0
    return TeiInfo(
        model_id=endpoint.pipeline.model_id, model_sha=spec.revision, model_dtype=spec.dtype,
        model_type=tei.model_type(task.name, details),
        max_concurrent_requests=ingress.config.ingress.max_ongoing_requests,
        max_input_length=window, max_batch_tokens=window * spec.max_batch_size,
        max_batch_requests=spec.max_batch_size,
        max_client_batch_size=spec.max_inputs_per_request,
        tokenization_workers=0 if spec.colocate_tokenizer else spec.tokenizer_replicas,
        version=VERSION, name=name, task=task.name,
    ).model_dump()
