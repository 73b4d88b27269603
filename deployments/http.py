"""HTTP plumbing of the ingress: the one exception handler, Ray error translation, and
the request body limit."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError
from ray.serve.exceptions import (
    BackPressureError,
    DeploymentUnavailableError,
    ReplicaUnavailableError,
    RequestCancelledError,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from deployments.middleware import route_path
from serving.errors import (
    RETRY_AFTER_S,
    BackendError,
    InvalidInputError,
    OverloadedError,
    RequestTimeoutError,
    ServingError,
    UnavailableError,
    describe_validation_errors,
    error_answer,
    http_error_body,
)

logger = logging.getLogger(__name__)

_RETRY_AFTER_S = str(RETRY_AFTER_S)


def as_serving_error(exc: BaseException) -> ServingError:
    """Translate anything raised while serving a request into a domain error."""
    while isinstance(exc, RayTaskError) and exc.cause is not None:
        exc = exc.cause
    if isinstance(exc, ServingError):
        return exc
    if isinstance(exc, BackPressureError):
        return OverloadedError("the server is at capacity; retry shortly")
    if isinstance(exc, (DeploymentUnavailableError, ReplicaUnavailableError,
                        ActorDiedError, ActorUnavailableError)):
        return UnavailableError(f"a model replica is unavailable: {type(exc).__name__}")
    if isinstance(exc, (asyncio.TimeoutError, RequestCancelledError)):
        return RequestTimeoutError("the request did not finish in time")
    logger.exception("unexpected error while serving a request", exc_info=exc)
    return BackendError(f"internal error ({type(exc).__name__})")


def is_replica_loss(exc: BaseException) -> bool:
    """Whether ``exc`` says that a replica died or vanished while serving the call (not
    that the request itself was bad): such a call may be retried on another replica."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, (RayActorError, ReplicaUnavailableError)):
            return True
        exc = exc.cause if isinstance(exc, RayTaskError) else exc.__cause__
        seen += 1
    return False


class _ErrorJSONResponse(JSONResponse):
    """JSON whatever the message holds: text that UTF-8 cannot encode (a lone surrogate
    echoed from a request) is written as JSON escapes instead of failing with a 500."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode()


def error_response(error: ServingError, path: str = "") -> JSONResponse:
    """The JSON response for a domain error on the route at ``path``, in that route's
    dialect (:func:`serving.errors.error_answer`), with Retry-After when retrying helps."""
    status, body = error_answer(error, path)
    headers = {"Retry-After": _RETRY_AFTER_S} if status in (429, 503) else None
    return _ErrorJSONResponse(body, status_code=status, headers=headers)


def unparsable_body(exc: BaseException) -> ServingError:
    """Why a request body that FastAPI could not read as JSON was refused (FastAPI raises
    a bare 400 "There was an error parsing the body" from the decoder's exception)."""
    if isinstance(exc, ServingError):  # e.g. the body limit, raised while reading
        return exc
    if isinstance(exc, UnicodeDecodeError):
        return InvalidInputError(
            f"request body is not valid JSON: not UTF-8 (byte 0x{exc.object[exc.start]:02x} "
            f"at position {exc.start})"
        )
    if isinstance(exc, RecursionError):
        return InvalidInputError("request body nests JSON arrays or objects too deeply")
    if isinstance(exc, ValueError) and "integer string conversion" in str(exc):
        return InvalidInputError(
            f"request body has an integer of more than {sys.get_int_max_str_digits()} digits"
        )
    return InvalidInputError(f"request body is not valid JSON ({type(exc).__name__})")


def install_error_handlers(app: FastAPI) -> None:
    """Make every error answer with its mapped status, in the shape of the route's dialect
    (:func:`serving.errors.error_answer`): ``{"error", "error_type"}`` with our types, TEI's
    on TEI's routes (request-body validation included: ``Validation``, 422), OpenAI's on
    ``/v1/...``."""

    @app.exception_handler(ServingError)
    async def _serving(request: Request, exc: ServingError) -> JSONResponse:
        return error_response(exc, route_path(request.scope))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(InvalidInputError(describe_validation_errors(exc.errors())),
                              route_path(request.scope))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        path = route_path(request.scope)
        if exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI's body parsing
            return error_response(unparsable_body(exc.__cause__), path)
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http")
        body = http_error_body(str(exc.detail), exc.status_code, kind, path)
        return JSONResponse(body, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return error_response(as_serving_error(exc), route_path(request.scope))


def plain(value: Any) -> Any:
    """``value`` with numpy arrays and scalars turned into lists and Python numbers."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


class FastJSONResponse(Response):
    """JSON written by orjson, numpy arrays included (float32 stays float32: the shortest
    text that reads back as the same float32)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY, default=plain)


class ServingRoute(APIRoute):
    """The one place where what a route raises becomes a domain error: every dialect's
    router uses it (``APIRouter(route_class=ServingRoute)``), so a Ray error, a timeout or
    an unexpected exception answers like any :class:`ServingError` (FastAPI's own request
    validation and HTTP errors pass through to their handlers)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except (RequestValidationError, StarletteHTTPException):
                raise
            except Exception as exc:
                raise as_serving_error(exc) from None

        return handle
