"""Text Embeddings Inference (TEI): ``/embed``, ``/similarity``, ``/predict``, ``/rerank``,
``/tokenize``, ``/decode`` and ``/info``, each also as ``/models/{name}/...`` for one named
model; ``POST /`` and ``/invocations`` (SageMaker), and ``/embeddings`` (OpenAI's body).

The routes are a table: per TEI route its request schema, answer model and the function
answering it; un-named routes answer for the first served model whose task answers the
route (``Task.tei_routes``).
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Body

from deployments.api.common import ERRORS, OPENAI_ERRORS, IngressDep, new_router, validated
from deployments.api.openai_api import openai_embeddings
from deployments.http import FastJSONResponse
from serving import tei
from serving.errors import InvalidInputError, WrongModelKindError
from serving.prompts import Prompts
from serving.schemas.inference_api import InferenceRequest
from serving.schemas.openai import EmbeddingsResponse
from serving.schemas.tei import (
    TeiDecodeRequest,
    TeiEmbedAllRequest,
    TeiEmbedRequest,
    TeiEmbedSparseRequest,
    TeiInfo,
    TeiInfoList,
    TeiPredictRequest,
    TeiRerankRequest,
    TeiSimilarityRequest,
    TeiSparseValue,
    TeiToken,
    TeiTokenizeRequest,
)
from serving.tasks.base import check_text
from serving.tei_inputs import EmbedInputs, decode_inputs, embed_inputs

router = new_router()
VERSION = "0.1.0"


async def _embed(ingress: Any, endpoint: Any, body: TeiEmbedRequest) -> Any:
    pipeline = endpoint.pipeline
    parts = embed_inputs(body, pipeline.spec.max_inputs_per_request)
    if parts.ids and endpoint.task.takes_prompts:
        prompts = Prompts.from_details(await pipeline.details())
        if prompts.text(body.prompt_name):  # TEI prompts the ids' text (without specials)
            texts = await pipeline.decode(parts.ids, True, parts.id_names)
            parts = parts.with_ids_as_texts(texts)
    request = tei.embed_request(body.model_copy(update={"inputs": parts.texts}))
    text_vectors, id_vectors = await asyncio.gather(
        _embed_texts(ingress, endpoint, request, parts),
        _embed_ids(ingress, endpoint, request, parts),
    )
    return tei.embed_answer(parts.merged(text_vectors, id_vectors))


async def _embed_texts(ingress: Any, endpoint: Any, request: InferenceRequest,
                       parts: EmbedInputs) -> list[Any]:
    return await ingress.answer(endpoint.name, request) if parts.texts else []


async def _embed_ids(ingress: Any, endpoint: Any, request: InferenceRequest,
                     parts: EmbedInputs) -> list[Any]:
    """The vectors of the token-id inputs, taken as given (TEI adds no special tokens)."""
    if not parts.ids:
        return []
    params = ingress.parameters(endpoint, request)
    vectors, _ = await endpoint.pipeline.embed_ids(parts.ids, params, False, parts.id_names)
    return vectors


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
    if endpoint.task.takes_prompts:  # the text the model reads: its prompt first
        prompts = Prompts.from_details(await endpoint.pipeline.details())
        texts = prompts.apply(texts, body.prompt_name)
    elif body.prompt_name is not None:
        raise InvalidInputError(f"prompt_name: {endpoint.name!r} ({endpoint.task.name}) "
                                "takes no prompts")
    details = await endpoint.pipeline.token_details(texts, body.add_special_tokens)
    return tei.tokens_answer(details, body.offsets)


async def _decode(ingress: Any, endpoint: Any, body: TeiDecodeRequest) -> list[str]:
    ids, names = decode_inputs(body, endpoint.pipeline.spec.max_inputs_per_request)
    return await endpoint.pipeline.decode(ids, body.skip_special_tokens, names)


async def _embed_sparse(ingress: Any, endpoint: Any, body: TeiEmbedSparseRequest) -> Any:
    tei.check_pooling("embed_sparse", endpoint.name, await endpoint.pipeline.details())
    return await ingress.answer(endpoint.name, tei.embed_sparse_request(body))


async def _embed_all(ingress: Any, endpoint: Any, body: TeiEmbedAllRequest) -> Any:
    tei.check_pooling("embed_all", endpoint.name, await endpoint.pipeline.details())
    return tei.embed_all_answer(await ingress.answer(endpoint.name, tei.embed_all_request(body)))


async def _pooling_default(ingress: Any, route: str) -> str | None:
    """The first served embedding model that answers ``route`` of
    :data:`tei.POOLING_ROUTES` (a SPLADE model for /embed_sparse), or None."""
    for name in ingress.endpoint_names():
        endpoint = ingress.endpoint(name)
        if (route in endpoint.task.tei_routes
                and tei.answers_pooling(route, await endpoint.pipeline.details())):
            return name
    return None


Answer = Callable[[Any, Any, Any], Awaitable[Any]]
# route → (request body, answer model or None, what it does, the function answering it)
ROUTES: dict[str, tuple[type, Any, str, Answer]] = {
    "embed": (TeiEmbedRequest, list[list[float]], "Embeddings", _embed),
    "similarity": (TeiSimilarityRequest, list[float], "Sentence similarity", _similarity),
    "predict": (TeiPredictRequest, None, "Sequence classification", _predict),
    "rerank": (TeiRerankRequest, None, "Rerank texts for a query", _rerank),
    "tokenize": (TeiTokenizeRequest, list[list[TeiToken]], "Tokenize", _tokenize),
    "decode": (TeiDecodeRequest, list[str], "Decode token ids", _decode),
    "embed_sparse": (TeiEmbedSparseRequest, list[list[TeiSparseValue]],
                     "Sparse embeddings (SPLADE)", _embed_sparse),
    "embed_all": (TeiEmbedAllRequest, list[list[list[float]]], "Token embeddings",
                  _embed_all),
}


def _default_endpoint(ingress: Any, route: str) -> str:
    for name in ingress.endpoint_names():
        if route in ingress.endpoint(name).task.tei_routes:
            return name
    raise WrongModelKindError(  # TEI answers a model of the wrong kind 424: so do we
        f"no served model answers /{route}; it needs a {' or '.join(tei.route_tasks(route))} "
        "model"
    )


async def _answer(ingress: Any, route: str, name: str | None, body: Any) -> FastJSONResponse:
    if name is None and route in tei.POOLING_ROUTES:
        name = await _pooling_default(ingress, route)
    endpoint = ingress.endpoint(name or _default_endpoint(ingress, tei.answering_route(route)))
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


# Routes TEI may serve on POST / (``tei.main_route``); other tasks have none.
_MAIN_ROUTES = frozenset({"embed", "embed_sparse", "predict", "rerank"})


@router.post("/", responses=ERRORS, name="tei_root",
             summary="The main route of the first model TEI would serve (TEI)")
@router.post("/invocations", responses=ERRORS, name="tei_invocations",
             summary="The main route of the first model TEI would serve (SageMaker)")
async def invoke(ingress: IngressDep, body: dict[str, Any] = Body()) -> FastJSONResponse:
    """TEI's body of the first served model's main route (``/embed``, ``/rerank`` or
    ``/predict``, as ``tei.main_route`` picks it from the model's kind); an embedding
    model also takes ``/similarity``'s body, and a body with ``parameters`` is the Inference
    API's (``tei.root_route``)."""
    return await _invoke(ingress, None, body)


@router.post("/models/{name:path}/invocations", responses=ERRORS, name="tei_invocations_model",
             summary="The main route of one model (SageMaker)")
async def invoke_model(name: str, ingress: IngressDep,
                       body: dict[str, Any] = Body()) -> FastJSONResponse:
    return await _invoke(ingress, name, body)


async def _invoke(ingress: Any, name: str | None, body: dict[str, Any]) -> FastJSONResponse:
    name, main = await _main_route(ingress, name)
    route = tei.root_route(main, body)
    if route == tei.INFERENCE_API:
        return FastJSONResponse(await ingress.answer(name, validated(InferenceRequest, body, "")))
    return await _answer(ingress, route, name, validated(ROUTES[route][0], body, ""))


async def _main_route(ingress: Any, name: str | None) -> tuple[str, str]:
    """Model ``name`` (or the first served model that TEI would serve) and its main route."""
    for candidate in [name] if name else ingress.endpoint_names():
        endpoint = ingress.endpoint(candidate)
        if endpoint.task.tei_routes & _MAIN_ROUTES:
            kind = tei.model_type(endpoint.task.name, await endpoint.pipeline.details())
            route = tei.main_route(kind)
            if route in ROUTES:
                return candidate, route
    tasks = dict.fromkeys(task for route in sorted(_MAIN_ROUTES) for task in tei.route_tasks(route))
    needs = f"it needs a {' or '.join(tasks)} model"
    if name:
        task = ingress.endpoint(name).task.name
        raise WrongModelKindError(f"model {name!r} is a {task} model with no main TEI route; "
                                  f"{needs}")
    raise WrongModelKindError(f"no served model answers POST / and /invocations; {needs}")


# TEI serves OpenAI's embeddings on /embeddings too (OpenAI clients with the server's root
# as base_url post there).
router.post("/embeddings", responses=OPENAI_ERRORS, response_model=EmbeddingsResponse,
            summary="Embeddings (OpenAI format; TEI's alias of /v1/embeddings)",
            name="tei_openai_embeddings")(openai_embeddings)


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
    """TEI's ``/info`` of endpoint ``name``: ``model_dtype`` is the dtype its replica runs
    (the configured one for a model that does not report it, e.g. a generator)."""
    endpoint = ingress.endpoint(name)
    spec, task = endpoint.pipeline.spec, endpoint.task
    details = await endpoint.pipeline.details()
    window = details.get("max_input_length") or 0
    return TeiInfo(
        model_id=endpoint.pipeline.model_id, model_sha=spec.revision,
        model_dtype=details.get("dtype") or spec.dtype, served_model_name=name,
        model_type=tei.model_type(task.name, details),
        max_concurrent_requests=ingress.config.ingress.max_ongoing_requests,
        max_input_length=window, max_batch_tokens=window * spec.max_batch_size,
        max_batch_requests=spec.max_batch_size,
        max_client_batch_size=spec.max_inputs_per_request,
        tokenization_workers=0 if spec.colocate_tokenizer else spec.tokenizer_replicas,
        version=VERSION, name=name, task=task.name,
    ).model_dump()
