"""OpenAI's embeddings format: request inputs in, ``EmbeddingsResponse`` out (no Ray)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from serving.errors import InvalidInputError
from serving.schemas import Embedding, EmbeddingsRequest, EmbeddingsResponse, EmbeddingsUsage


def input_texts(request: EmbeddingsRequest) -> str | list[str]:
    """The request's texts, in the Inference API's ``inputs`` shape."""
    data = request.input
    if isinstance(data, list) and data and not isinstance(data[0], str):
        raise InvalidInputError(
            "input: token-id inputs are not supported; send the text (a string or a list of "
            "strings)"
        )
    return data


def embeddings_response(
    vectors: list[Any], prompt_tokens: int, request: EmbeddingsRequest
) -> EmbeddingsResponse:
    """``vectors``: one sentence embedding per input, in order."""
    matrix = np.asarray(vectors, dtype=np.float32)
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
