"""The FastAPI ingress: validates requests and sends them down per-model pipelines.

The routes live in one router per API dialect (``deployments/api/``); they reach this
replica through ``request.app.state.ingress`` and call its shared core: :meth:`answer`
(validate, coalesce, submit, format) and :meth:`endpoint`. HTTP routes and the Python
handle API (``serve.get_app_handle(app).infer.remote(...)``) share that code path.

Ray pickles this class by value into the replica: module-level helpers the class uses
are defined above it (one defined below was a ``NameError`` in the replica). The FastAPI
app is built in the replica (``__serve_build_asgi_app__``), so its routes and middleware
can reach this instance.
"""

import asyncio
import functools
import time
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.api import make_app
from deployments.api.common import validated
from deployments.api.openai_api import embeddings, model_list
from deployments.api.openai_generation_api import chat_completions, completions
from deployments.calls import Caller, request_id, set_request_id
from deployments.http import as_serving_error, plain
from deployments.metrics import IngressMetrics
from deployments.pipelines import Pipeline, pipeline_for
from deployments.pool_pipelines import PoolPipeline
from serving.config import AppConfig
from serving.errors import ModelNotFoundError, ServingError, status_code_for
from serving.jobs import Failed, Job, group_jobs, request_ids
from serving.matryoshka import check_request_dimensions
from serving.prompts import Prompts
from serving.schemas.inference_api import InferenceRequest
from serving.schemas.openai import EmbeddingsRequest, EmbeddingsResponse, ModelList
from serving.schemas.openai_generation import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
)
from serving.tasks import Task, TaskParameters, task_class
from serving.tasks.embedding_views import VIEWS


@dataclass(frozen=True)
class Endpoint:
    """A name clients call: a model, or a view computed from a model's embeddings."""

    name: str
    task: type[Task]  # the model's own task, or the view's
    pipeline: Pipeline  # the model's pipeline (shared by its views)


def _domain_errors(method: Any) -> Any:
    """Handle-API methods raise domain errors, as the HTTP routes answer them."""
    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await method(*args, **kwargs)
        except Exception as exc:
            raise as_serving_error(exc) from None
    return wrapper


@serve.deployment
@serve.ingress()
class Ingress:
    """Routes each request to the pipeline of the model it names."""

    def __init__(self, pipelines: dict[str, dict[str, DeploymentHandle]], config: AppConfig):
        self.config = config
        self.started = int(time.time())
        self.metrics = IngressMetrics()
        call = Caller(config.ingress.retries, self.metrics.retried)
        self.pipelines = {spec.name: pipeline_for(spec, call, pipelines[spec.name])
                          for spec in config.models}
        self.pools = {name: pipeline for name, pipeline in self.pipelines.items()
                      if isinstance(pipeline, PoolPipeline)}
        self._endpoints = {
            name: Endpoint(name, task, self.pipelines[spec.name])
            for spec in config.models if spec.name not in self.pools
            for name, task in [(spec.name, task_class(spec.task)),
                               *((view.name, VIEWS[view.task]) for view in spec.views)]
        }
        self._run.set_max_batch_size(config.ingress.coalesce_max_requests)
        self._run.set_batch_wait_timeout_s(config.ingress.coalesce_wait_s)

    def __serve_build_asgi_app__(self) -> FastAPI:
        """The HTTP app, built in the replica once this ingress exists (Ray calls this
        after ``__init__``)."""
        return make_app(self, self.config.ingress, self.metrics.refused)

    # --- Python handle API -----------------------------------------------------------

    @_domain_errors
    async def infer(self, model: str, request: InferenceRequest | dict) -> Any:
        """Answer one Inference API request for ``model``, as ``POST /models/{model}`` does.

        Raises:
            ServingError: ``ModelNotFoundError``, ``InvalidInputError``, ``OverloadedError``...
        """
        return plain(await self.answer(model, request))

    async def infer_many(self, model: str,
                         requests: list[InferenceRequest | dict]) -> list[Any | ServingError]:
        """Answer several Inference API requests for ``model`` in one call: one answer per
        request, or the domain error that request alone raised (``deployments.client``
        merges a process's concurrent calls into one of these)."""
        answers = await asyncio.gather(*(self.infer(model, request) for request in requests),
                                       return_exceptions=True)
        return [as_serving_error(a) if isinstance(a, BaseException) else a for a in answers]

    @_domain_errors
    async def embeddings(self, request: EmbeddingsRequest | dict) -> EmbeddingsResponse:
        """OpenAI-format embeddings (as ``POST /v1/embeddings``)."""
        return await embeddings(self, request)

    @_domain_errors
    async def completions(self, request: CompletionRequest | dict) -> CompletionResponse:
        """OpenAI-format completions (as ``POST /v1/completions``, without streaming)."""
        return await completions(self, request)

    @_domain_errors
    async def chat_completions(self, request: ChatCompletionRequest | dict
                               ) -> ChatCompletionResponse:
        """OpenAI-format chat (as ``POST /v1/chat/completions``, without streaming)."""
        return await chat_completions(self, request)

    @_domain_errors
    async def list_models(self) -> ModelList:
        """The served models (as ``GET /v1/models``)."""
        return await model_list(self)

    # --- the core the routes share ---------------------------------------------------

    def endpoint(self, name: str) -> Endpoint:
        """The endpoint called ``name``.

        Raises:
            ModelNotFoundError: naming the served models.
        """
        found = self._endpoints.get(name)
        if found is not None:
            return found
        pool, _, member = name.partition("/")
        if pool in self.pools:
            pipeline = self.pools[pool]
            if not member:  # the pool itself answers nothing: say how to call a member
                raise pipeline.not_a_model()
            return Endpoint(name, pipeline.task, pipeline.member(member))
        known = ", ".join([*self._endpoints, *(f"{pool}/<member>" for pool in self.pools)])
        raise ModelNotFoundError(f"model {name!r} is not served; served models: {known}")

    def endpoint_names(self) -> list[str]:
        """Every served model and view, in configuration order (not pools' members)."""
        return list(self._endpoints)

    def parameters(self, endpoint: Endpoint, request: InferenceRequest) -> TaskParameters:
        """The request's parameters, validated for the endpoint's task (and its model's
        config: ``dimensions`` only for Matryoshka models)."""
        task = endpoint.task
        params = validated(task.parameters,
                           request.task_parameters(task.parameters.model_fields), "parameters")
        check_request_dimensions(params, endpoint.pipeline.spec)
        return params

    async def answer(self, name: str, request: InferenceRequest | dict) -> Any:
        """The Inference API answer of ``request`` for endpoint ``name`` (metered)."""
        endpoint = self.endpoint(name)
        started, status = time.perf_counter(), 200
        try:
            return await self._answer(endpoint, request)
        except Exception as exc:
            status = status_code_for(exc) if isinstance(exc, ServingError) else 500
            raise
        finally:
            self.metrics.request(name, endpoint.task.name, status, time.perf_counter() - started)

    async def _answer(self, endpoint: Endpoint, request: InferenceRequest | dict) -> Any:
        if isinstance(request, dict):
            request = validated(InferenceRequest, request, "")
        params = self.parameters(endpoint, request)
        spec = endpoint.pipeline.spec
        inputs = endpoint.task.parse_inputs(request.raw_inputs(), spec.max_inputs_per_request,
                                            params)
        if endpoint.task.takes_prompts:  # the model's prompts, as its replicas report them
            prompts = Prompts.from_details(await endpoint.pipeline.details())
            inputs = endpoint.task.prompted(inputs, params, prompts)
        job = Job(endpoint.pipeline.key, inputs, params, request_id())
        try:
            result = await self._run(job)
        except asyncio.CancelledError:  # the client is gone: its queued work can go too
            job.abandoned.set()
            raise
        if isinstance(result, Failed):
            raise result.error
        return endpoint.task.format(result, inputs, params)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.001, max_concurrent_batches=64)
    async def _run(self, jobs: list[Job]) -> list[list[Any] | Failed]:
        """Coalesce concurrent requests: each group of jobs for one pipeline costs one
        tokenizer call and one model call instead of two calls per request."""
        results: list[list[Any] | Failed] = [Failed(RuntimeError("not run"))] * len(jobs)

        async def run_group(indices: list[int]) -> None:
            group = [jobs[i] for i in indices]
            # The tokenizer and model calls (and their log lines) carry the group's request
            # ids; ``@serve.batch`` runs this without any request's context.
            set_request_id(request_ids(group))
            try:
                answers = await self.endpoint(group[0].model).pipeline.submit(group)
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
