"""HTTP plumbing of the ingress: the one exception handler, Ray error translation, and
the request body limit."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError
from ray.serve.exceptions import (
    BackPressureError,
    DeploymentUnavailableError,
    ReplicaUnavailableError,
    RequestCancelledError,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.admission import AdmissionLimit
from serving.errors import (
    RETRY_AFTER_S,
    BackendError,
    InvalidInputError,
    OverloadedError,
    PayloadTooLargeError,
    RequestTimeoutError,
    ServingError,
    UnauthorizedError,
    UnavailableError,
    describe_validation_errors,
    status_code_for,
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


def error_response(error: ServingError) -> JSONResponse:
    """The JSON response for a domain error, with Retry-After when retrying helps."""
    status = status_code_for(error)
    headers = {"Retry-After": _RETRY_AFTER_S} if status in (429, 503) else None
    return _ErrorJSONResponse(error.to_body(), status_code=status, headers=headers)


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
    """Make every error answer ``{"error", "error_type"}`` with the mapped status."""

    @app.exception_handler(ServingError)
    async def _serving(_: Request, exc: ServingError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(InvalidInputError(describe_validation_errors(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI's body parsing
            return error_response(unparsable_body(exc.__cause__))
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http")
        return JSONResponse({"error": str(exc.detail), "error_type": kind},
                            status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return error_response(as_serving_error(exc))


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


class BodySizeLimit:
    """ASGI middleware refusing bodies over ``max_bytes`` with 413, before reading them in
    full: by ``Content-Length`` when sent, else while the body streams in."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        refused = False

        async def limited_receive():
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    raise PayloadTooLargeError("request body too large")
            return message

        async def guarded_send(message) -> None:
            if not refused:
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refused:
                raise
        if refused:
            await self._refuse(send)

    async def _refuse(self, send) -> None:
        await _send_error(send, PayloadTooLargeError(
            f"request body exceeds the limit of {self.max_bytes} bytes"))


def read_api_key(key_env: str, file_env: str, environ: dict[str, str]) -> str | None:
    """The API key from ``environ[key_env]``, else from the file ``environ[file_env]``
    names (trailing newline dropped); ``None`` when neither is set (no auth).

    Raises:
        ValueError: the variable or file is set but empty.
    """
    key = environ.get(key_env)
    if key is None and environ.get(file_env):
        with open(environ[file_env], encoding="utf-8") as secret:
            key = secret.read().strip()
    if key is not None and not key.strip():
        raise ValueError(f"the API key from {key_env} / {file_env} is empty")
    return key


class ApiKeyAuth:
    """ASGI middleware: every request but the public paths must send
    ``Authorization: Bearer <key>``; the key is compared in constant time."""

    def __init__(self, app, api_key: str) -> None:
        self.app = app
        self._key = api_key.encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or self._public(scope) or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        error = UnauthorizedError("missing or wrong API key: send 'Authorization: Bearer <key>'")
        await _send_error(send, error, [(b"www-authenticate", b"Bearer")])

    @staticmethod
    def _public(scope) -> bool:
        # /health, and the playground page and its files; what the page calls is not public.
        path, root = scope["path"], scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        return path in ("/", "/health") or path.startswith("/playground/")

    def _allowed(self, scope) -> bool:
        header = dict(scope.get("headers") or ()).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self._key)


class Admission:
    """ASGI middleware bounding the work one ingress replica accepts.

    - At most ``max_inflight`` POST requests are served at once, and no more than the
      replica answers within ``max_wait_s`` at its measured rate (``AdmissionLimit``); one
      more is refused at once with 429 and ``Retry-After`` (nothing queued, nothing read),
      so overload costs the server almost nothing, memory stays flat and the accepted
      requests' latency stays near ``max_wait_s``.
    - A request not answered within ``timeout_s`` gets a 504 and is cancelled, which
      cancels its queued model work. A streamed answer that has started is not cut.
    """

    def __init__(self, app, max_inflight: int, timeout_s: float,
                 max_wait_s: float | None = None,
                 on_refused: Callable[[str], None] | None = None) -> None:
        self.app = app
        self.limit = AdmissionLimit(max_inflight, max_wait_s)
        self.timeout_s = timeout_s
        self._on_refused = on_refused or (lambda reason: None)

    @property
    def inflight(self) -> int:
        return self.limit.inflight

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if not self.limit.admits(path):
            self._on_refused("overloaded")
            await _send_error(send, OverloadedError(
                f"the server is at capacity ({self.limit.inflight} requests in flight); "
                "retry shortly"))
            return
        self.limit.started(path)
        try:
            await self._with_deadline(scope, receive, send)
        finally:
            self.limit.finished(path)

    async def _with_deadline(self, scope, receive, send) -> None:
        started = False

        async def tracked_send(message) -> None:
            nonlocal started
            started = True
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, tracked_send))
        try:
            done, _ = await asyncio.wait({task}, timeout=self.timeout_s)
        except asyncio.CancelledError:  # the client went away: so does its work
            task.cancel()
            raise
        if not done and started:  # a stream under way: let it finish
            await task
            return
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self._on_refused("timeout")
            await _send_error(send, RequestTimeoutError(
                f"the request did not finish within {self.timeout_s:g} s"))
            return
        task.result()


async def _send_error(send, error: ServingError, headers: list | None = None) -> None:
    """Send ``error`` as a complete JSON response from ASGI middleware."""
    status = status_code_for(error)
    headers = [(b"content-type", b"application/json"), *(headers or ())]
    if status in (429, 503):
        headers.append((b"retry-after", _RETRY_AFTER_S.encode()))
    body = json.dumps(error.to_body()).encode()
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
