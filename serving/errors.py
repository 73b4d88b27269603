"""Domain errors, typed once and mapped to HTTP status codes once.

Deployments raise these; they cross process boundaries, so every error keeps only a
plain string message (pickles cleanly). The ingress turns them into answers with
:func:`error_answer`, in the dialect of the route: ``{"error": ..., "error_type": ...}``
bodies with :func:`status_code_for` on the Inference API; TEI's ``{"error", "error_type"}``
with TEI's six error types and statuses on TEI's routes (:func:`tei_answer`); OpenAI's
``{"error": {"message", "type", "param", "code"}}`` on OpenAI's (:func:`openai_answer`).
"""

from __future__ import annotations

import re
from typing import Any


class ServingError(Exception):
    """Base class of every error this project reports to a client."""

    error_type = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self):  # keep pickling trivial across Ray workers
        return (type(self), (self.message,))

    def to_body(self) -> dict[str, str]:
        """The JSON error body sent to clients."""
        return {"error": self.message, "error_type": self.error_type}


class InvalidInputError(ServingError):
    """The request is well-formed JSON but its content cannot be served."""

    error_type = "validation"


class InputTooLongError(InvalidInputError):
    """An input exceeds the model window and the client disabled truncation."""

    error_type = "input_too_long"


class WrongModelKindError(InvalidInputError):
    """The named (or every served) model is of a kind the route cannot use: ``/predict``
    on an embedding model, ``/rerank`` on a classifier with several labels. Invalid input
    (422) on our routes; TEI answers it as a backend error (424)."""

    error_type = "wrong_model_kind"


class ModelNotFoundError(ServingError):
    """The request names a model that is not in the configuration."""

    error_type = "not_found"


class PayloadTooLargeError(ServingError):
    """The request body exceeds the configured limit."""

    error_type = "payload_too_large"


class OverloadedError(ServingError):
    """The server is at capacity; the client should retry later."""

    error_type = "overloaded"


class UnavailableError(ServingError):
    """A model is not loaded or not answering."""

    error_type = "unhealthy"


class RequestTimeoutError(ServingError):
    """The request did not finish within the configured timeout."""

    error_type = "timeout"


class BackendError(ServingError):
    """The model failed while computing an answer."""

    error_type = "backend"


class UnauthorizedError(ServingError):
    """The request lacks the API key the server was started with."""

    error_type = "unauthorized"


# The one status table. Order matters: the first matching class wins, so subclasses
# come before their parents.
_STATUS_CODES: tuple[tuple[type[ServingError], int], ...] = (
    (InputTooLongError, 422),
    (WrongModelKindError, 422),
    (InvalidInputError, 422),
    (ModelNotFoundError, 404),
    (UnauthorizedError, 401),
    (PayloadTooLargeError, 413),
    (OverloadedError, 429),
    (UnavailableError, 503),
    (RequestTimeoutError, 504),
    (BackendError, 500),
)


# Seconds a refused client (429 or 503) is told to wait before retrying.
RETRY_AFTER_S = 1


def status_code_for(error: ServingError) -> int:
    """HTTP status code for a domain error (500 for anything unmapped)."""
    for error_class, status in _STATUS_CODES:
        if isinstance(error, error_class):
            return status
    return 500


# --- dialects: each route family answers errors in its own shape -------------------------

OPENAI_PATH_PREFIX = "/v1/"

# OpenAI's ``code`` where OpenAI's clients know one; other errors carry our error_type.
_OPENAI_CODES: tuple[tuple[type[ServingError], str | None], ...] = (
    (InputTooLongError, "context_length_exceeded"),
    (InvalidInputError, None),
    (ModelNotFoundError, "model_not_found"),
    (UnauthorizedError, "invalid_api_key"),
)

# The field an invalid-input message starts with (``messages[0].content: ...``).
_PARAM = re.compile(r"([A-Za-z_][\w.\[\]]*): ")


# TEI's OpenAI-compatible route without the /v1 prefix (for a base URL without it).
_OPENAI_UNPREFIXED = "/embeddings"

# TEI's routes, at the root (``/embed``; ``""`` is TEI's root ``POST /``) and for one named
# model (``/models/{name}/embed``); ``/health`` at the root is ours (operations.py).
TEI_ROUTES = frozenset({
    "", "embed", "embed_all", "embed_sparse", "similarity", "predict", "rerank", "tokenize",
    "decode", "info", "invocations", "ping",
})
_TEI_MODEL_ROUTES = TEI_ROUTES | {"health"}


def _route_of(path: str) -> tuple[str | None, bool]:
    """The last segment of ``/<route>`` or ``/models/{name}/<route>`` (None for any other
    path: the Inference API's ``/models/{name}`` has no route of its own), and whether the
    path names a model."""
    if path.startswith("/models/"):
        name, _, route = path[len("/models/"):].rpartition("/")
        return (route if name and route else None), True
    return (path[1:] if path.startswith("/") and "/" not in path[1:] else None), False


def speaks_openai(path: str) -> bool:
    """Whether the route at ``path`` (without any root path) is one of OpenAI's."""
    return path.startswith(OPENAI_PATH_PREFIX) or path == _OPENAI_UNPREFIXED


def speaks_tei(path: str) -> bool:
    """Whether the route at ``path`` (without any root path) is one of TEI's."""
    route, named = _route_of(path)
    return route in (_TEI_MODEL_ROUTES if named else TEI_ROUTES)


def openai_status_code_for(error: ServingError) -> int:
    """The HTTP status of ``error`` on OpenAI's routes: ours, except 400 for invalid input
    (OpenAI's clients read 422 as an unexpected status)."""
    status = status_code_for(error)
    return 400 if status == 422 else status


def openai_error_body(message: str, status: int, code: str | None,
                      param: str | None = None) -> dict[str, Any]:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``.

    ``type`` is ``invalid_request_error`` for the client's errors and ``server_error`` for
    the server's (429 included: the server is at capacity, not the client over a quota).
    """
    kind = "invalid_request_error" if status < 500 and status != 429 else "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _openai_code(error: ServingError) -> str | None:
    for error_class, code in _OPENAI_CODES:
        if isinstance(error, error_class):
            return code
    return error.error_type


def openai_answer(error: ServingError) -> tuple[int, dict[str, Any]]:
    """``(status, OpenAI's error body)`` answering ``error``; ``param`` names the field an
    invalid-input message starts with."""
    status = openai_status_code_for(error)
    param = None
    if isinstance(error, InvalidInputError) and (match := _PARAM.match(error.message)):
        param = match.group(1)
    return status, openai_error_body(error.message, status, _openai_code(error), param)


# TEI's error_type per error, and TEI's status where it differs from ours (None: ours).
# TEI has six types (router/src/lib.rs ErrorType) and answers Validation and Tokenizer 422,
# Empty 400, Overloaded 429, Unhealthy 503 and Backend 424 (router/src/http/server.rs).
# Errors TEI has no type for keep our status with the nearest type (a client's fault:
# Validation). A failure of this server (BackendError, anything unmapped) stays a 500 with
# type Backend: TEI's 424 says a dependency failed, and a 5xx keeps it visible.
_TEI_TYPES: tuple[tuple[type[ServingError], str, int | None], ...] = (
    (WrongModelKindError, "Backend", 424),  # TEI: "Model is not an embedding model", 424
    (InvalidInputError, "Validation", None),
    (ModelNotFoundError, "Validation", None),
    (UnauthorizedError, "Validation", None),
    (PayloadTooLargeError, "Validation", None),
    (OverloadedError, "Overloaded", None),
    (UnavailableError, "Unhealthy", None),
    (RequestTimeoutError, "Backend", None),
)
TEI_ERROR_TYPES = ("Unhealthy", "Backend", "Overloaded", "Validation", "Tokenizer", "Empty")


def tei_answer(error: ServingError) -> tuple[int, dict[str, str]]:
    """``(status, TEI's error body)`` answering ``error``: ``{"error", "error_type"}`` with
    one of TEI's six error types (:data:`TEI_ERROR_TYPES`)."""
    for error_class, error_type, status in _TEI_TYPES:
        if isinstance(error, error_class):
            return status or status_code_for(error), {"error": error.message,
                                                      "error_type": error_type}
    return status_code_for(error), {"error": error.message, "error_type": "Backend"}


def error_answer(error: ServingError, path: str) -> tuple[int, dict[str, Any]]:
    """``(status, JSON body)`` answering ``error`` on the route at ``path``: OpenAI's shape
    and statuses on OpenAI's routes (:func:`openai_answer`), TEI's on TEI's
    (:func:`tei_answer`), ``{"error", "error_type"}`` with our types everywhere else."""
    if speaks_openai(path):
        return openai_answer(error)
    if speaks_tei(path):
        return tei_answer(error)
    return status_code_for(error), error.to_body()


def http_error_body(message: str, status: int, kind: str, path: str) -> dict[str, Any]:
    """The body of an HTTP error that is no :class:`ServingError` (no such route: 404, a
    method the route does not take: 405), with our ``kind``, in the dialect of ``path``."""
    if speaks_openai(path):
        return openai_error_body(message, status, kind)
    if speaks_tei(path):
        return {"error": message, "error_type": "Validation"}
    return {"error": message, "error_type": kind}


def describe_validation_errors(errors: list[dict], prefix: str = "") -> str:
    """One readable line per pydantic error, each naming its field (``parameters.top_k: ...``)."""
    lines = []
    for error in errors:
        if error.get("type") == "json_invalid":
            lines.append(f"request body is not valid JSON (at character {error['loc'][-1]})")
            continue
        if tuple(error.get("loc", ())) == ("body",) and error.get("type") in _BODY_TYPE_ERRORS:
            lines.append(_body_type_error(error))
            continue
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        location = f"{prefix}.{location}" if prefix and location else (prefix or location)
        lines.append(f"{location}: {error['msg']}" if location else error["msg"])
    return "; ".join(lines)


# pydantic's error types saying that the whole body is missing or not a JSON object.
_BODY_TYPE_ERRORS = frozenset({"missing", "model_attributes_type", "model_type", "dict_type"})


def _body_type_error(error: dict) -> str:
    if error.get("type") == "missing":
        return "request body is empty; send a JSON object"
    given = error.get("input")
    if isinstance(given, bytes | bytearray):  # FastAPI passes non-JSON content types as bytes
        return "request body must be a JSON object sent with Content-Type: application/json"
    kind = {type(None): "null", bool: "a boolean", int: "a number", float: "a number",
            str: "a string", list: "an array"}.get(type(given), type(given).__name__)
    return f"request body must be a JSON object, not {kind}"
