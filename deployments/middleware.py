"""ASGI middleware of the ingress: the body size limit, the API key, and admission
(bounded work, deadlines)."""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Callable

from serving.admission import AdmissionLimit
from serving.errors import (
    RETRY_AFTER_S,
    OverloadedError,
    PayloadTooLargeError,
    RequestTimeoutError,
    ServingError,
    UnauthorizedError,
    error_answer,
)

_RETRY_AFTER_S = str(RETRY_AFTER_S)


def route_path(scope: dict) -> str:
    """The request's path without the app's root path (what the routes match)."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


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
            await self._refuse(scope, send)
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
            await self._refuse(scope, send)

    async def _refuse(self, scope, send) -> None:
        await _send_error(scope, send, PayloadTooLargeError(
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
        await _send_error(scope, send, error, [(b"www-authenticate", b"Bearer")])

    @staticmethod
    def _public(scope) -> bool:
        # /health, and the playground page and its files; what the page calls is not public.
        path = route_path(scope)
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
            await _send_error(scope, send, OverloadedError(
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
            await _send_error(scope, send, RequestTimeoutError(
                f"the request did not finish within {self.timeout_s:g} s"))
            return
        task.result()


async def _send_error(scope, send, error: ServingError, headers: list | None = None) -> None:
    """Send ``error`` as a complete JSON response from ASGI middleware, in the dialect of
    the requested route (:func:`serving.errors.error_answer`)."""
    status, answer = error_answer(error, route_path(scope))
    headers = [(b"content-type", b"application/json"), *(headers or ())]
    if status in (429, 503):
        headers.append((b"retry-after", _RETRY_AFTER_S.encode()))
    body = json.dumps(answer).encode()
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
