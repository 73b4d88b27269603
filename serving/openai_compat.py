"""OpenAI's embeddings format: request inputs in, ``EmbeddingsResponse`` out (no Ray)."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.errors import InvalidInputError, WrongModelKindError
from serving.matryoshka import check_dimensions
from serving.quantization import check_ranged_count, quantize
from serving.schemas.openai import Embedding, EmbeddingsRequest, EmbeddingsResponse, EmbeddingsUsage
from serving.sparse import is_sparse_answer

if TYPE_CHECKING:
    from typing_extensions import TypeIs

    from serving.config import ModelSpec

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


def precision(request: EmbeddingsRequest) -> str:
    """The request's ``embedding_type`` as sentence-transformers names the precision."""
    return "float32" if request.embedding_type == "float" else request.embedding_type


def check_options(request: EmbeddingsRequest, spec: ModelSpec, inputs: int) -> None:
    """Refuse, before any model call, what the answer could not honour: ``dimensions`` for
    a model not configured as Matryoshka-trained, ``int8``/``uint8`` for fewer than two
    ``inputs`` (their ranges come from the request's vectors).

    Raises:
        InvalidInputError: naming the field.
    """
    check_dimensions(request.dimensions, spec, "dimensions")
    check_ranged_count(precision(request), inputs, "embedding_type")


def embeddings_response(
    vectors: list[Any], prompt_tokens: int, request: EmbeddingsRequest
) -> EmbeddingsResponse:
    """``vectors``: one sentence embedding per input, in order; cut to ``dimensions`` and
    re-normalised, then quantized to ``embedding_type``, as sentence-transformers orders
    ``truncate_dim``, normalization and ``precision``."""
    if is_sparse_answer(vectors):  # as TEI's /v1/embeddings on a SPLADE model
        raise WrongModelKindError(
            f"model {request.model!r} gives sparse embeddings (SPLADE); /v1/embeddings needs "
            "a dense sentence embedding model: use /embed_sparse"
        )
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
    matrix = quantize(matrix, precision(request))
    data = [
        Embedding(index=i, embedding=_encode(row, request.encoding_format))
        for i, row in enumerate(matrix)
    ]
    return EmbeddingsResponse(
        data=data, model=request.model,
        usage=EmbeddingsUsage(prompt_tokens=prompt_tokens, total_tokens=prompt_tokens),
    )


def _encode(row: np.ndarray, encoding_format: str) -> list[int] | list[float] | str:
    # base64 is float32 bytes whatever the type (as Infinity writes quantized vectors): the
    # OpenAI clients decode it so, and an integer of 8 bits is exact as a float32.
    if encoding_format == "base64":
        return base64.b64encode(row.astype("<f4").tobytes()).decode("ascii")
    return row.tolist()
