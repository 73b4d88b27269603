"""Domain errors, typed once and mapped to HTTP status codes once.

Deployments raise these; they cross process boundaries, so every error keeps only a
plain string message (pickles cleanly). The ingress turns them into
``{"error": ..., "error_type": ...}`` bodies with :func:`status_code_for`.
"""

from __future__ import annotations


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
