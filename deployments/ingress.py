"""The FastAPI ingress: validates requests and routes them to per-model pipelines.

HTTP routes and the Python handle API (``serve.get_app_handle(app).infer.remote(...)``)
share one code path, :meth:`Ingress.infer`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import Body, FastAPI
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.http import BodySizeLimit, as_serving_error, install_error_handlers
from serving.config import AppConfig, ModelSpec
from serving.errors import (
    InvalidInputError,
    ModelNotFoundError,
    ServingError,
    describe_validation_errors,
)
from serving.schemas import (
    EXAMPLES,
    ErrorBody,
    HealthReport,
    InferenceRequest,
    ModelCard,
    ModelList,
)
from serving.tasks import task_class

app = FastAPI(
    title="transformers-serve",
    summary="Hugging Face Transformers on Ray Serve: a tokenizer → batched model graph.",
    version="0.1.0",
)
install_error_handlers(app)

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in ((404, "Unknown model"), (413, "Body too large"),
                         (422, "Invalid input or parameters"), (429, "Overloaded"),
                         (503, "Model unavailable"))
}


def _validated(schema, data: Any, where: str):
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(describe_validation_errors(exc.errors(), where)) from None


@serve.deployment
@serve.ingress(app)
class Ingress:
    """Routes ``/models/{name}`` to that model's tokenizer → model pipeline."""

    def __init__(self, pipelines: dict[str, dict[str, DeploymentHandle]], config: AppConfig):
        self._config = config
        self._pipelines = pipelines
        self._started = int(time.time())
        app.add_middleware(BodySizeLimit, max_bytes=config.ingress.max_body_bytes)

    # --- Python handle API -----------------------------------------------------------

    async def infer(self, model: str, request: InferenceRequest | dict) -> Any:
        """Answer one Inference API request for ``model``, as ``POST /models/{model}`` does.

        Raises:
            ServingError: ``ModelNotFoundError``, ``InvalidInputError``, ``OverloadedError``...
        """
        try:
            return await self._infer(model, request)
        except Exception as exc:
            raise as_serving_error(exc) from None

    def list_models(self) -> ModelList:
        """The served models (as ``GET /v1/models``)."""
        return ModelList(data=[self._card(spec) for spec in self._config.models])

    # --- HTTP routes -----------------------------------------------------------------

    @app.post("/models/{name}", responses=_ERRORS, summary="Run a model (Inference API payload)")
    async def predict(
        self, name: str, request: InferenceRequest = Body(openapi_examples=EXAMPLES)
    ) -> Any:
        return await self.infer(name, request)

    @app.get("/v1/models", summary="List served models (OpenAI format)")
    def models(self) -> ModelList:
        return self.list_models()

    @app.get("/health", response_model=HealthReport, responses={503: {"model": HealthReport}})
    async def health(self) -> JSONResponse:
        """200 only when every model is loaded and answers a probe request."""
        names = [spec.name for spec in self._config.models]
        results = await asyncio.gather(*(self._probe(name) for name in names))
        report = HealthReport(
            status="ok" if all(r == "ok" for r in results) else "unhealthy",
            models=dict(zip(names, results, strict=True)),
        )
        return JSONResponse(report.model_dump(), status_code=200 if report.status == "ok" else 503)

    # --- internals ---------------------------------------------------------------------

    async def _infer(self, model: str, request: InferenceRequest | dict) -> Any:
        spec = self._spec(model)
        if isinstance(request, dict):
            request = _validated(InferenceRequest, request, "")
        task = task_class(spec.task)
        params = _validated(task.parameters, request.parameters, "parameters")
        inputs = task.parse_inputs(request.raw_inputs(), spec.max_inputs_per_request)
        pipeline = self._pipelines[spec.name]
        encoded = pipeline["tokenizer"].encode.remote(
            inputs.texts, inputs.text_pairs, params.truncation
        )
        results = await pipeline["model"].infer.remote(encoded, params)
        return task.format(results, inputs.single)

    async def _probe(self, name: str) -> str:
        try:
            await asyncio.wait_for(
                self._infer(name, InferenceRequest(inputs="health check")),
                timeout=self._config.ingress.health_timeout_s,
            )
            return "ok"
        except Exception as exc:  # report the reason instead of failing the probe
            error = as_serving_error(exc) if not isinstance(exc, ServingError) else exc
            return f"{error.error_type}: {error.message}"

    def _spec(self, name: str) -> ModelSpec:
        spec = self._config.model(name)
        if spec is None:
            known = ", ".join(s.name for s in self._config.models)
            raise ModelNotFoundError(f"model {name!r} is not served; served models: {known}")
        return spec

    def _card(self, spec: ModelSpec) -> ModelCard:
        return ModelCard(id=spec.name, created=self._started, task=spec.task, model=spec.model)

