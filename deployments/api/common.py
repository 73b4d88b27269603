"""What every dialect's router shares: the route class, the ingress dependency and the
documented error answers."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from deployments.http import ServingRoute
from serving.errors import InvalidInputError, describe_validation_errors
from serving.schemas.openai import OpenAIErrorBody
from serving.schemas.operations import ErrorBody


async def _ingress(request: Request) -> Any:
    """The ingress replica serving this request (set by ``Ingress.__init__``).

    ``async``: FastAPI runs a plain ``def`` dependency in its thread pool, a thread
    hand-off on every request."""
    return request.app.state.ingress


# The ``Ingress`` replica, as a route parameter (typed ``Any``: the ingress module imports
# the routers, not the other way round).
IngressDep = Annotated[Any, Depends(_ingress)]

_STATUSES = ((401, "Missing or wrong API key (when the server has one)"),
             (404, "Unknown model"), (413, "Body too large"),
             (422, "Invalid input or parameters"), (429, "Overloaded"),
             (503, "Model unavailable"))
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text} for status, text in _STATUSES
}
# OpenAI's routes answer 400 for invalid input, in OpenAI's error shape.
OPENAI_ERRORS: dict[int | str, dict[str, Any]] = {
    400 if status == 422 else status: {"model": OpenAIErrorBody, "description": text}
    for status, text in _STATUSES
}


def new_router() -> APIRouter:
    """A router whose routes turn every error into its domain error's answer."""
    return APIRouter(route_class=ServingRoute)


def validated(schema: Any, data: Any, where: str) -> Any:
    """``data`` read as pydantic ``schema``, or an InvalidInputError naming the problem."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(describe_validation_errors(exc.errors(), where)) from None
