"""The FastAPI ingress: validates requests and routes them to per-model pipelines.

HTTP routes and the Python handle API (``serve.get_app_handle(app).infer.remote(...)``)
share one code path, :meth:`Ingress.infer`.

No ``from __future__ import annotations`` here: Ray pickles the route methods by value into
the replica, where FastAPI could no longer resolve string annotations (a request body model
was then read as a missing query parameter). For the same reason, module-level helpers the
class uses are defined above it (one defined below was a ``NameError`` in the replica).
"""

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import Body, FastAPI, Header
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from ray import serve
from ray.serve.handle import DeploymentHandle, DeploymentResponse

from deployments.http import (
    Admission,
    ApiKeyAuth,
    BodySizeLimit,
    FastJSONResponse,
    as_serving_error,
    install_error_handlers,
    is_replica_loss,
    plain,
    read_api_key,
)
from deployments.metrics import IngressMetrics
from serving import tei
from serving.config import AppConfig, ModelSpec
from serving.errors import (
    InvalidInputError,
    ModelNotFoundError,
    RequestTimeoutError,
    ServingError,
    describe_validation_errors,
    status_code_for,
)
from serving.jobs import Failed, Job, all_abandoned, group_jobs, merged_inputs, request_ids
from serving.openai_compat import embeddings_response, input_texts, input_token_ids
from serving.schemas import (
    EXAMPLES,
    EmbeddingsRequest,
    EmbeddingsResponse,
    ErrorBody,
    HealthReport,
    InferenceRequest,
    ModelCard,
    ModelList,
    TeiEmbedRequest,
    TeiInfo,
    TeiInfoList,
    TeiPredictRequest,
    TeiRerankRequest,
    TeiSimilarityRequest,
    TeiToken,
    TeiTokenizeRequest,
)
from serving.tasks import Slice, Task, task_class
from serving.tasks.base import check_text
from serving.tasks.embedding_views import VIEWS
from serving.tasks.zero_shot import as_label_list, wants_label_list

app = FastAPI(
    title="transformers-serve",
    summary="Hugging Face Transformers on Ray Serve: a tokenizer → batched model graph.",
    version="0.1.0",
)
install_error_handlers(app)
# The browser playground: plain static files, no build step.
PLAYGROUND = Path(__file__).resolve().parent.parent / "playground"
app.mount("/playground", StaticFiles(directory=PLAYGROUND), name="playground")

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in ((401, "Missing or wrong API key (when the server has one)"),
                         (404, "Unknown model"), (413, "Body too large"),
                         (422, "Invalid input or parameters"), (429, "Overloaded"),
                         (503, "Model unavailable"))
}


def _validated(schema, data: Any, where: str):
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(describe_validation_errors(exc.errors(), where)) from None


def _request_id() -> str:
    """Ray Serve's id of the request being handled ("" outside a request)."""
    return serve.context._get_serve_request_context().request_id  # no public accessor yet


def _set_request_id(request_id: str) -> None:
    """Make ``request_id`` the id of the handle calls made from this asyncio task."""
    if request_id:
        serve.context._set_request_context(request_id=request_id)


def _probe_request(task: type[Task]) -> InferenceRequest:
    return InferenceRequest(inputs=task.probe_inputs, parameters=task.probe_parameters)


def _task_for(spec: ModelSpec, task: str) -> type[Task]:
    """The task class of an endpoint: the model's own task, or an embedding view."""
    return VIEWS[task] if task != spec.task else task_class(task)


async def _unless_abandoned(response: DeploymentResponse, jobs: list[Job] | None) -> Any:
    """Await ``response``; cancel it (and raise ``RequestTimeoutError``) if every job of
    ``jobs`` is abandoned first."""
    if not jobs:
        return await response
    answer = asyncio.ensure_future(response)  # any awaitable; a DeploymentResponse is one
    gone = asyncio.ensure_future(all_abandoned(jobs))
    try:
        await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if answer.done():
        return answer.result()
    response.cancel()  # Ray drops the work wherever it still waits (queue, batch)
    answer.cancel()
    raise RequestTimeoutError("every client of this call went away")


@serve.deployment
@serve.ingress(app)
class Ingress:
    """Routes ``/models/{name}`` to that model's tokenizer → model pipeline."""

    def __init__(self, pipelines: dict[str, dict[str, DeploymentHandle]], config: AppConfig):
        self._config = config
        self._pipelines = pipelines
        self._started = int(time.time())
        self._details: dict[str, dict] = {}  # per pipeline, what its replicas report for /info
        self._metrics = IngressMetrics()
        self._run.set_max_batch_size(config.ingress.coalesce_max_requests)
        self._run.set_batch_wait_timeout_s(config.ingress.coalesce_wait_s)
        app.add_middleware(BodySizeLimit, max_bytes=config.ingress.max_body_bytes)
        settings = config.ingress
        api_key = read_api_key(settings.api_key_env, settings.api_key_file_env, os.environ)
        if api_key is not None:
            app.add_middleware(ApiKeyAuth, api_key=api_key)
        app.add_middleware(Admission, max_inflight=settings.max_inflight_requests,
                           max_wait_s=settings.max_queue_wait_s,
                           timeout_s=settings.request_timeout_s, on_refused=self._metrics.refused)
        if settings.cors_origins:  # outermost: preflight requests carry no API key
            app.add_middleware(
                CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
                expose_headers=["X-Request-ID"],
            )

    # --- Python handle API -----------------------------------------------------------

    async def infer(self, model: str, request: InferenceRequest | dict) -> Any:
        """Answer one Inference API request for ``model``, as ``POST /models/{model}`` does.

        Raises:
            ServingError: ``ModelNotFoundError``, ``InvalidInputError``, ``OverloadedError``...
        """
        return plain(await self._answer(model, request))

    async def embeddings(self, request: EmbeddingsRequest | dict) -> EmbeddingsResponse:
        """OpenAI-format embeddings (as ``POST /v1/embeddings``)."""
        try:
            if isinstance(request, dict):
                request = _validated(EmbeddingsRequest, request, "")
            spec, task = self._endpoint(request.model)
            if task.name != "feature-extraction":
                raise InvalidInputError(
                    f"model: {request.model!r} is a {task.name} model; /v1/embeddings needs "
                    "a feature-extraction model"
                )
            texts = input_texts(request)
            pipeline = self._pipelines[spec.name]
            if texts is None:
                ids = input_token_ids(request, spec.max_inputs_per_request)
                vectors, tokens = await self._embed_ids(pipeline, task, ids)
                return embeddings_response(vectors, tokens, request)
            counter = pipeline.get("tokenizer", pipeline["model"])
            vectors, tokens = await asyncio.gather(
                self._infer(request.model, {"inputs": texts}),
                self._retrying(lambda: counter.processed_tokens.remote(texts)),
            )
            return embeddings_response(vectors, tokens, request)
        except Exception as exc:
            raise as_serving_error(exc) from None

    async def _embed_ids(
        self, pipeline: dict[str, DeploymentHandle], task: type[Task], ids: list[list[int]]
    ) -> tuple[list[Any], int]:
        """Embeddings of token-id inputs, and the tokens the model read."""
        slices = [Slice(len(ids), task.parameters(), "texts")]
        if "tokenizer" not in pipeline:  # colocate_tokenizer
            (vectors,), tokens = await self._retrying(
                lambda: pipeline["model"].infer_ids.remote(ids, slices))
            return vectors, tokens
        encoded = await self._retrying(lambda: pipeline["tokenizer"].encode_ids.remote(ids))
        (vectors,) = await self._retrying(
            lambda: pipeline["model"].infer_many.remote(encoded, slices))
        return vectors, encoded.num_tokens

    def list_models(self) -> ModelList:
        """The served models (as ``GET /v1/models``)."""
        return ModelList(data=[self._card(name) for name in self._endpoint_names()])

    # --- HTTP routes -----------------------------------------------------------------

    @app.post("/models/{name}", responses=_ERRORS, summary="Run a model (Inference API payload)")
    async def predict(
        self, name: str, request: InferenceRequest = Body(openapi_examples=EXAMPLES),
        user_agent: str | None = Header(None, include_in_schema=False),
    ) -> Any:
        if request.stream or request.parameters.get("stream") is True:
            return await self._stream(name, request)
        answer = await self._answer(name, request)
        # huggingface_hub's InferenceClient reads zero-shot answers as [{label, score}].
        if (self._endpoint(name)[1].name == "zero-shot-classification"
                and wants_label_list(user_agent)):
            answer = as_label_list(answer)
        return FastJSONResponse(answer)

    @app.post("/v1/embeddings", responses=_ERRORS, summary="Embeddings (OpenAI format)")
    async def openai_embeddings(self, request: EmbeddingsRequest) -> EmbeddingsResponse:
        return FastJSONResponse((await self.embeddings(request)).model_dump())

    @app.get("/v1/models", summary="List served models (OpenAI format)")
    def models(self) -> ModelList:
        return self.list_models()

    @app.get("/", include_in_schema=False)
    def playground(self) -> FileResponse:
        """The playground page (its scripts and styles are under ``/playground/``)."""
        return FileResponse(PLAYGROUND / "index.html")

    @app.get("/health", response_model=HealthReport, responses={503: {"model": HealthReport}})
    async def health(self) -> JSONResponse:
        """200 only when every model is loaded and answers a probe request."""
        names = self._endpoint_names()
        results = await asyncio.gather(*(self._probe(name) for name in names))
        report = HealthReport(
            status="ok" if all(r == "ok" for r in results) else "unhealthy",
            models=dict(zip(names, results, strict=True)),
        )
        return JSONResponse(report.model_dump(), status_code=200 if report.status == "ok" else 503)

    # --- Text Embeddings Inference routes (for one model: /models/{name}/embed, ...) ---

    @app.post("/embed", responses=_ERRORS, summary="Embeddings (TEI)",
              response_model=list[list[float]])
    async def tei_embed(self, request: TeiEmbedRequest) -> FastJSONResponse:
        return await self._tei("embed", None, request)

    @app.post("/models/{name}/embed", responses=_ERRORS, summary="Embeddings of one model (TEI)",
              response_model=list[list[float]])
    async def tei_embed_model(self, name: str, request: TeiEmbedRequest) -> FastJSONResponse:
        return await self._tei("embed", name, request)

    @app.post("/similarity", responses=_ERRORS, summary="Sentence similarity (TEI)",
              response_model=list[float])
    async def tei_similarity(self, request: TeiSimilarityRequest) -> FastJSONResponse:
        return await self._tei("similarity", None, request)

    @app.post("/models/{name}/similarity", responses=_ERRORS, response_model=list[float],
              summary="Sentence similarity with one model (TEI)")
    async def tei_similarity_model(self, name: str, request: TeiSimilarityRequest
                                   ) -> FastJSONResponse:
        return await self._tei("similarity", name, request)

    @app.post("/predict", responses=_ERRORS, summary="Sequence classification (TEI)")
    async def tei_predict(self, request: TeiPredictRequest) -> FastJSONResponse:
        return await self._tei("predict", None, request)

    @app.post("/models/{name}/predict", responses=_ERRORS,
              summary="Sequence classification with one model (TEI)")
    async def tei_predict_model(self, name: str, request: TeiPredictRequest) -> FastJSONResponse:
        return await self._tei("predict", name, request)

    @app.post("/rerank", responses=_ERRORS, summary="Rerank texts for a query (TEI)")
    async def tei_rerank(self, request: TeiRerankRequest) -> FastJSONResponse:
        return await self._tei("rerank", None, request)

    @app.post("/models/{name}/rerank", responses=_ERRORS,
              summary="Rerank texts for a query with one model (TEI)")
    async def tei_rerank_model(self, name: str, request: TeiRerankRequest) -> FastJSONResponse:
        return await self._tei("rerank", name, request)

    @app.post("/tokenize", responses=_ERRORS, summary="Tokenize (TEI)",
              response_model=list[list[TeiToken]])
    async def tei_tokenize(self, request: TeiTokenizeRequest) -> FastJSONResponse:
        return await self._tei("tokenize", None, request)

    @app.post("/models/{name}/tokenize", responses=_ERRORS, response_model=list[list[TeiToken]],
              summary="Tokenize with one model's tokenizer (TEI)")
    async def tei_tokenize_model(self, name: str, request: TeiTokenizeRequest) -> FastJSONResponse:
        return await self._tei("tokenize", name, request)

    @app.get("/info", response_model=TeiInfoList, summary="Served models' limits (TEI)")
    async def tei_info(self) -> FastJSONResponse:
        """TEI's fields for the first embedding model (or the first model), and every
        served model under ``models``."""
        names = self._endpoint_names()
        infos = await asyncio.gather(*(self._info(name) for name in names))
        models = dict(zip(names, infos, strict=True))
        embedders = [name for name in names if models[name]["task"] == "feature-extraction"]
        return FastJSONResponse({**models[(embedders or names)[0]], "models": models})

    @app.get("/models/{name}/info", response_model=TeiInfo, responses=_ERRORS,
             summary="One model's limits (TEI)")
    async def tei_info_model(self, name: str) -> FastJSONResponse:
        try:
            return FastJSONResponse(await self._info(name))
        except Exception as exc:
            raise as_serving_error(exc) from None

    async def _tei(self, route: str, name: str | None, body: Any) -> FastJSONResponse:
        """Answer a TEI route for model ``name`` (default: the first that fits the route)."""
        try:
            name = name or self._default_endpoint(route)
            spec, task = self._endpoint(name)
            tei.check_route(route, name, task.name)
            if route == "embed":
                answer = tei.embed_answer(await self._infer(name, tei.embed_request(body)))
            elif route == "similarity":
                answer = await self._infer(name, tei.similarity_request(body))
            elif route == "predict":
                requests, inputs, single = tei.predict_requests(body)
                answers = await asyncio.gather(*(self._infer(name, r) for r in requests))
                answer = tei.predict_answer(answers, inputs, single)
            elif route == "rerank":
                request = tei.rerank_request(body, task.name)
                answer = tei.rerank_answer(await self._infer(name, request), body, task.name)
            else:
                answer = await self._tokens(spec, body)
        except Exception as exc:
            raise as_serving_error(exc) from None
        return FastJSONResponse(answer)

    async def _tokens(self, spec: ModelSpec, body: TeiTokenizeRequest) -> list[list[dict]]:
        texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
        where = "inputs" if isinstance(body.inputs, str) else "inputs[{}]"
        texts = [check_text(text, where.format(i)) for i, text in enumerate(texts)]
        if not texts or len(texts) > spec.max_inputs_per_request:
            raise InvalidInputError(
                f"inputs: send 1 to {spec.max_inputs_per_request} texts, not {len(texts)}"
            )
        pipeline = self._pipelines[spec.name]
        source = pipeline.get("tokenizer", pipeline["model"])
        return await self._retrying(
            lambda: source.token_details.remote(texts, body.add_special_tokens))

    async def _info(self, name: str) -> dict:
        spec, task = self._endpoint(name)
        if spec.name not in self._details:  # fixed for the life of the replicas
            found: dict = {}
            for deployment in self._pipelines[spec.name].values():
                found.update(await deployment.details.remote())
            self._details[spec.name] = found
        details = self._details[spec.name]
        window = details.get("max_input_length") or 0
        return TeiInfo(
            model_id=spec.model, model_sha=spec.revision, model_dtype=spec.dtype,
            model_type=tei.model_type(task.name, details),
            max_concurrent_requests=self._config.ingress.max_ongoing_requests,
            max_input_length=window, max_batch_tokens=window * spec.max_batch_size,
            max_batch_requests=spec.max_batch_size,
            max_client_batch_size=spec.max_inputs_per_request,
            tokenization_workers=0 if spec.colocate_tokenizer else spec.tokenizer_replicas,
            version=app.version, name=name, task=task.name,
        ).model_dump()

    def _default_endpoint(self, route: str) -> str:
        for name in self._endpoint_names():
            if self._endpoint(name)[1].name in tei.ROUTE_TASKS[route]:
                return name
        raise ModelNotFoundError(
            f"no served model answers /{route}; it needs a "
            f"{' or '.join(tei.ROUTE_TASKS[route])} model"
        )

    # --- internals ---------------------------------------------------------------------

    async def _answer(self, model: str, request: InferenceRequest | dict) -> Any:
        try:
            return await self._infer(model, request)
        except Exception as exc:
            raise as_serving_error(exc) from None

    async def _infer(self, model: str, request: InferenceRequest | dict) -> Any:
        spec, task = self._endpoint(model)
        started, status = time.perf_counter(), 200
        try:
            return await self._infer_task(spec, task, request)
        except Exception as exc:
            status = status_code_for(exc) if isinstance(exc, ServingError) else 500
            raise
        finally:
            self._metrics.request(model, task.name, status, time.perf_counter() - started)

    async def _infer_task(
        self, spec: ModelSpec, task: type[Task], request: InferenceRequest | dict
    ) -> Any:
        if isinstance(request, dict):
            request = _validated(InferenceRequest, request, "")
        params = _validated(task.parameters, request.task_parameters(task.parameters.model_fields),
                            "parameters")
        inputs = task.parse_inputs(request.raw_inputs(), spec.max_inputs_per_request, params)
        job = Job(spec.name, inputs, params, _request_id())
        try:
            result = await self._run(job)
        except asyncio.CancelledError:  # the client is gone: its queued work can go too
            job.abandoned.set()
            raise
        if isinstance(result, Failed):
            raise result.error
        return task.format(result, inputs, params)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.001, max_concurrent_batches=64)
    async def _run(self, jobs: list[Job]) -> list[list[Any] | Failed]:
        """Coalesce concurrent requests: each group of jobs for one pipeline costs one
        tokenizer call and one model call instead of two calls per request."""
        results: list[list[Any] | Failed] = [Failed(RuntimeError("not run"))] * len(jobs)

        async def run_group(indices: list[int]) -> None:
            group = [jobs[i] for i in indices]
            # The tokenizer and model calls (and their log lines) carry the group's request
            # ids; ``@serve.batch`` runs this without any request's context.
            _set_request_id(request_ids(group))
            try:
                answers = await self._retrying(lambda: self._submit(group), group)
            except Exception as exc:
                if len(group) == 1 or all(job.abandoned.is_set() for job in group):
                    for index in indices:
                        results[index] = Failed(as_serving_error(exc))
                    return
                # Isolate the failure: retry each request alone so only the guilty fails.
                await asyncio.gather(*(run_group([i]) for i in indices))
                return
            for index, answer in zip(indices, answers, strict=True):
                results[index] = answer

        await asyncio.gather(*(run_group(indices) for indices in group_jobs(jobs)))
        return results

    async def _retrying(
        self, call: Callable[[], DeploymentResponse], jobs: list[Job] | None = None
    ) -> Any:
        """The answer of ``call()``, made again (up to ``ingress.retries`` times) when the
        replica serving it died: inference has no side effects, so a client sees no error
        while a healthy replica exists. When every job of ``jobs`` is abandoned by its
        client, the call is cancelled so its queued work frees its batch slots.
        """
        retries = self._config.ingress.retries
        for attempt in range(retries + 1):
            response = call()
            try:
                return await _unless_abandoned(response, jobs)
            except Exception as exc:
                if attempt == retries or not is_replica_loss(exc):
                    raise
                self._metrics.retried()
                await asyncio.sleep(0.05 * 2**attempt)  # let the router drop the dead replica
        raise AssertionError("unreachable")

    def _submit(self, group: list[Job]) -> DeploymentResponse:
        """Send a group of jobs down its pipeline; the response of the last deployment."""
        pipeline = self._pipelines[group[0].model]
        if "generator" in pipeline:  # text-generation: the generator tokenizes itself
            return pipeline["generator"].infer_many.remote(
                [job.inputs.texts for job in group], [job.params for job in group]
            )
        # A group is one model's jobs, so they share one task.
        task = task_class(self._spec(group[0].model).task)
        needs_offsets = task.needs_offsets
        texts, pairs = merged_inputs(group)
        windows = {}  # windowed tasks (question-answering): per input its window settings
        if task.windowed:
            windows["windows"] = [task.window(job.params) for job in group
                                  for _ in job.inputs.texts]
        slices = [
            Slice(len(job.inputs.texts), job.params, job.inputs.layout,
                  tuple(job.inputs.texts) if needs_offsets else None,
                  tuple(job.inputs.text_pairs)
                  if needs_offsets and job.inputs.text_pairs is not None else None)
            for job in group
        ]
        truncation = group[0].params.truncation
        if "tokenizer" not in pipeline:  # colocate_tokenizer: the model replica tokenizes
            return pipeline["model"].infer_texts.remote(
                texts, pairs, truncation, slices, with_offsets=needs_offsets, **windows
            )
        encoded = pipeline["tokenizer"].encode.remote(
            texts, pairs, truncation, with_offsets=needs_offsets, **windows
        )
        return pipeline["model"].infer_many.remote(encoded, slices)

    async def _stream(self, name: str, request: InferenceRequest) -> StreamingResponse:
        """Server-Sent Events of a text-generation request (TGI style), one per token.

        Errors found before the first token (validation, window) answer as JSON; later
        ones arrive as a last ``{"error", "error_type"}`` event.
        """
        spec, task = self._endpoint(name)
        pipeline = self._pipelines[spec.name]
        if task.name != "text-generation":
            raise InvalidInputError(f"model {name!r} ({task.name}) cannot stream; "
                                    "streaming is for text-generation models")
        params = _validated(task.parameters, request.task_parameters(task.parameters.model_fields),
                            "parameters")
        raw = request.raw_inputs()
        if isinstance(raw, list) and len(raw) != 1:
            raise InvalidInputError("inputs: a streamed request generates from one prompt")
        inputs = task.parse_inputs(raw, 1, params)
        events = pipeline["generator"].options(stream=True).stream.remote(inputs.texts[0], params)
        try:
            first = await events.__anext__()
        except Exception as exc:
            raise as_serving_error(exc) from None

        async def sse():
            try:
                yield f"data: {json.dumps(first)}\n\n"
                async for event in events:
                    yield f"data: {json.dumps(event)}\n\n"
            except Exception as exc:  # the status line is sent: report in the stream
                yield f"data: {json.dumps(as_serving_error(exc).to_body())}\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def _probe(self, name: str) -> str:
        try:
            await asyncio.wait_for(
                self._infer(name, _probe_request(self._endpoint(name)[1])),
                timeout=self._config.ingress.health_timeout_s,
            )
            return "ok"
        except Exception as exc:  # report the reason instead of failing the probe
            error = as_serving_error(exc) if not isinstance(exc, ServingError) else exc
            return f"{error.error_type}: {error.message}"

    def _spec(self, name: str) -> ModelSpec:
        return self._endpoint(name)[0]

    def _endpoint(self, name: str) -> tuple[ModelSpec, type[Task]]:
        found = self._config.endpoint(name)
        if found is None:
            known = ", ".join(self._endpoint_names())
            raise ModelNotFoundError(f"model {name!r} is not served; served models: {known}")
        spec, task = found
        return spec, _task_for(spec, task)

    def _endpoint_names(self) -> list[str]:
        return [name for spec in self._config.models
                for name in [spec.name, *(view.name for view in spec.views)]]

    def _card(self, name: str) -> ModelCard:
        spec, task = self._endpoint(name)
        return ModelCard(id=name, created=self._started, task=task.name, model=spec.model,
                         pipeline=spec.name)


