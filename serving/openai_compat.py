"""OpenAI's embeddings format: request inputs in, ``EmbeddingsResponse`` out (no Ray)."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.errors import InvalidInputError
from serving.schemas.openai import Embedding, EmbeddingsRequest, EmbeddingsResponse, EmbeddingsUsage

if TYPE_CHECKING:
    from typing_extensions import TypeIs

# ``EmbeddingsRequest.input`` once a single string is ruled out (pydantic admits no mix).
_Inputs = list[str] | list[int] | list[list[int]]


def _are_texts(data: _Inputs) -> TypeIs[list[str]]:
    return not data or isinstance(data[0], str)


def _is_one_input(data: list[int] | list[list[int]]) -> TypeIs[list[int]]:
    return isinstance(data[0], int)


def input_texts(request: EmbeddingsRequest) -> list[str] | None:
    """The request's texts, or ``None`` when it sends token ids."""
    data = request.input
    if isinstance(data, str):
        return [data]
    return data if _are_texts(data) else None


def input_token_ids(request: EmbeddingsRequest, max_inputs: int) -> list[list[int]]:
    """The request's token-id inputs: one list of ids, or a list of them.

    Raises:
        InvalidInputError: an empty list of ids, more inputs than ``max_inputs``, or texts
            (call :func:`input_texts` first).
    """
    data = request.input
    if isinstance(data, str) or _are_texts(data):
        raise InvalidInputError("input holds texts, not token ids")
    rows = [data] if _is_one_input(data) else data
    if len(rows) > max_inputs:
        raise InvalidInputError(f"input has {len(rows)} inputs, more than {max_inputs}")
    empty = next((i for i, row in enumerate(rows) if not row), None)
    if empty is not None:
        raise InvalidInputError(f"input[{empty}] is an empty list of token ids")
    return rows


def embeddings_response(
    vectors: list[Any], prompt_tokens: int, request: EmbeddingsRequest
) -> EmbeddingsResponse:
    """``vectors``: one sentence embedding per input, in order."""
    try:
        matrix = np.asarray(vectors, dtype=np.float32)
    except ValueError:  # token embeddings of texts of different lengths
        matrix = np.zeros((0, 0, 0), dtype=np.float32)
    if matrix.ndim != 2:
        raise InvalidInputError(
            f"model {request.model!r} gives token embeddings, not one vector per text; "
            "/v1/embeddings needs a sentence embedding model"
        )
    if request.dimensions is not None:
        if request.dimensions > matrix.shape[1]:
            raise InvalidInputError(
                f"dimensions: {request.dimensions} is more than the model's "
                f"{matrix.shape[1]}"
            )
        matrix = matrix[:, : request.dimensions]
        matrix = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    data = [
        Embedding(index=i, embedding=_encode(row, request.encoding_format))
        for i, row in enumerate(matrix)
    ]
    return EmbeddingsResponse(
        data=data, model=request.model,
        usage=EmbeddingsUsage(prompt_tokens=prompt_tokens, total_tokens=prompt_tokens),
    )


def _encode(row: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(row.astype("<f4").tobytes()).decode("ascii")
    return row.tolist()
