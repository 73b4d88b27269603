"""Embeddings quantized exactly as sentence-transformers' ``quantize_embeddings`` does them
(numpy only: the ingress imports neither torch nor sentence-transformers).

- ``int8`` / ``uint8``: each dimension is cut into 256 equal steps between its minimum and
  maximum over the request's embeddings (``quantization_ranges``); a value becomes the
  index of its step (``uint8``: 0..255; ``int8``: that minus 128). The ranges come from the
  request, as ``SentenceTransformer.encode(texts, precision=...)`` computes them from one
  call's texts: the same text can quantize differently next to other texts, and a request
  of one embedding has no range (refused, as sentence-transformers refuses it).
- ``binary`` / ``ubinary``: one bit per dimension (``> 0``), packed 8 to a byte
  (``np.packbits``, last byte padded with zeros); ``binary`` is each byte minus 128, as int8.

``dimensions`` and normalization come first: sentence-transformers truncates, then
normalizes, then quantizes.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from serving.errors import InvalidInputError

Precision = Literal["float32", "int8", "uint8", "binary", "ubinary"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
# Precisions whose scale comes from the embeddings of the request (per-dimension ranges).
RANGED: frozenset[str] = frozenset({"int8", "uint8"})


def check_ranged_count(precision: str | None, count: int, where: str) -> None:
    """Refuse an ``int8``/``uint8`` request of fewer than two embeddings: their ranges are
    computed from the request's embeddings, and one embedding has none.

    Raises:
        InvalidInputError: naming ``where`` (the request field).
    """
    if precision in RANGED and count < 2:
        raise InvalidInputError(
            f"{where}: {precision} is scaled per dimension by the minimum and maximum of the "
            "request's embeddings (as sentence-transformers' quantize_embeddings), so it "
            f"needs at least 2 inputs in one request, not {count}"
        )


def quantization_ranges(embeddings: np.ndarray) -> np.ndarray:
    """``(2, dim)``: per dimension the minimum and the maximum of ``embeddings`` (rows).

    Raises:
        InvalidInputError: fewer than two rows (no range to scale by).
    """
    if embeddings.ndim != 2 or embeddings.shape[0] < 2:
        raise InvalidInputError(
            "int8/uint8 quantization needs at least 2 embeddings to compute its ranges from"
        )
    return np.vstack((embeddings.min(axis=0), embeddings.max(axis=0)))


def quantize(
    embeddings: np.ndarray, precision: str, ranges: np.ndarray | None = None
) -> np.ndarray:
    """``embeddings`` (float rows, ``[n, dim]``) at ``precision``.

    Args:
        embeddings: float embeddings, one per row.
        precision: one of :data:`PRECISIONS`.
        ranges: ``int8``/``uint8`` only: ``(2, dim)`` minimum and maximum per dimension;
            default: those of ``embeddings`` (:func:`quantization_ranges`).

    Returns:
        ``float32`` rows; ``int8``/``uint8`` rows of ``dim`` values; ``binary`` (int8) or
        ``ubinary`` (uint8) rows of ``ceil(dim / 8)`` packed bytes.

    Raises:
        InvalidInputError: an unknown precision, or ``int8``/``uint8`` without ranges over
            fewer than two rows.
    """
    if precision == "float32":
        return embeddings.astype(np.float32)
    if precision in RANGED:
        if ranges is None:
            ranges = quantization_ranges(embeddings)
        # The same float32 arithmetic as sentence-transformers: the floor of a value that
        # sits on a step's edge must land in the same step.
        ranges = ranges.astype(np.float32, copy=False)
        starts = ranges[0, :]
        steps = (ranges[1, :] - starts) / 255
        steps = np.where(steps == 0, 1, steps)  # a constant dimension: every value is step 0
        steps_taken = np.clip(np.floor((embeddings - starts) / steps), 0, 255)
        if precision == "uint8":
            return steps_taken.astype(np.uint8)
        return (steps_taken - 128).astype(np.int8)
    if precision == "binary":
        # uint8 arithmetic wraps, and the int8 view of the result is byte - 128 exactly.
        return (np.packbits(embeddings > 0, axis=-1) - 128).astype(np.int8)
    if precision == "ubinary":
        return np.packbits(embeddings > 0, axis=-1)
    raise InvalidInputError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")


def quantize_matrices(matrices: list[np.ndarray], precision: str) -> list[np.ndarray]:
    """Token embeddings (one ``[tokens, dim]`` matrix per text) at ``precision``, with
    ``int8``/``uint8`` ranges over every token of every matrix, as
    ``quantize_embeddings`` does with a list of matrices.

    Raises:
        InvalidInputError: as :func:`quantize`.
    """
    ranges = None
    if precision in RANGED:
        ranges = quantization_ranges(np.concatenate(matrices, axis=0))
    return [quantize(matrix, precision, ranges) for matrix in matrices]
