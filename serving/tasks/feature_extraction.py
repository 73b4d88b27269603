"""feature-extraction: sentence embeddings as sentence-transformers computes them, or token
embeddings exactly like ``transformers.pipeline("feature-extraction")`` when the model has
no sentence-transformers pooling config."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from serving.errors import InvalidInputError
from serving.pooling import pool, sentence_transformers_pooling
from serving.tasks.base import RowTokens, Task, TaskInputs, TaskParameters, check_text


class FeatureExtractionParameters(TaskParameters):
    normalize: bool | None = Field(
        None, description="L2-normalize sentence embeddings (default: the model's config)."
    )
    dimensions: int | None = Field(
        None, ge=1, description="Keep the first n dimensions of each embedding (Matryoshka "
        "style), normalized afterwards when embeddings are normalized.",
    )


class FeatureExtraction(Task):
    name: ClassVar[str] = "feature-extraction"
    tei_routes: ClassVar[frozenset[str]] = frozenset({"embed", "similarity", "tokenize"})
    parameters = FeatureExtractionParameters

    def __init__(self, pooling: tuple[str, ...] | None, normalize: bool) -> None:
        self.pooling = pooling  # None: token embeddings, like transformers.pipeline
        self.normalize = normalize

    @classmethod
    def from_model(
        cls, model: Any, source: str, revision: str | None = None,
        pooling: str = "auto", normalize: bool | None = None,
    ) -> FeatureExtraction:
        prescribed = sentence_transformers_pooling(source, revision)
        st_modes, st_normalize = prescribed or (None, False)
        if pooling == "auto":
            modes = st_modes
        else:
            modes = None if pooling == "none" else (pooling,)
        return cls(modes, st_normalize if normalize is None else normalize)

    @classmethod
    def parse_inputs(
        cls, inputs: Any, max_inputs: int, params: TaskParameters | None = None
    ) -> TaskInputs:
        """Texts to embed, or ``{"source_sentence", "sentences"}`` to compare (the
        Inference API's sentence-similarity payload)."""
        if not isinstance(inputs, dict):
            return super().parse_inputs(inputs, max_inputs, params)
        if set(inputs) != {"source_sentence", "sentences"}:
            raise InvalidInputError("inputs must have 'source_sentence' and 'sentences'")
        sentences = inputs["sentences"]
        if not isinstance(sentences, list) or not sentences:
            raise InvalidInputError("inputs.sentences must be a non-empty list of strings")
        if len(sentences) + 1 > max_inputs:
            raise InvalidInputError(
                f"inputs has {len(sentences) + 1} texts, more than the limit of {max_inputs}"
            )
        texts = [check_text(inputs["source_sentence"], "inputs.source_sentence")]
        texts += [check_text(text, f"inputs.sentences[{i}]") for i, text in enumerate(sentences)]
        return TaskInputs(texts, None, single=True, layout="similarity")

    def forward(self, engine: Any, batch: dict[str, Any]) -> list[np.ndarray]:
        hidden = engine.forward(batch).last_hidden_state
        mask = batch["attention_mask"]
        if self.pooling is None:
            lengths = mask.sum(dim=1).tolist()
            tokens = hidden.float().cpu().numpy()
            return [tokens[i, :n] for i, n in enumerate(lengths)]
        return list(pool(hidden, mask, self.pooling).float().cpu().numpy())

    def postprocess_request(
        self,
        outputs: list[np.ndarray],
        params: TaskParameters,
        layout: str,
        tokens: RowTokens | None = None,
        texts: Sequence[str] | None = None,
        text_pairs: Sequence[str] | None = None,
    ) -> list[Any]:
        if layout != "similarity":
            return super().postprocess_request(outputs, params, layout)
        if self.pooling is None:
            raise InvalidInputError(
                "sentence-similarity needs a sentence embedding model (one with a "
                "sentence-transformers pooling config, or `pooling` set in the config)"
            )
        vectors = _first_dimensions(np.stack(outputs).astype(np.float32), params)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return [(vectors[1:] @ vectors[0]).tolist()]  # cosine similarity to the source

    def postprocess(self, output: np.ndarray, params: TaskParameters) -> Any:
        # Arrays stay arrays: they cross Ray as raw buffers and are written to JSON by orjson
        # without a Python float per number (the handle API turns them into lists).
        output = _first_dimensions(output, params)
        if self.pooling is None:
            return output[None]  # pipeline shape: [1, tokens, dim] per input
        requested = getattr(params, "normalize", None)  # views reuse this with own params
        normalize = self.normalize if requested is None else requested
        if normalize:
            output = output / max(float(np.linalg.norm(output)), 1e-12)
        return output


def _first_dimensions(vectors: np.ndarray, params: TaskParameters) -> np.ndarray:
    """``vectors`` cut to ``params.dimensions`` along the last axis (if asked).

    Raises:
        InvalidInputError: more dimensions asked than the model has.
    """
    dimensions = getattr(params, "dimensions", None)  # views reuse this with own params
    if dimensions is None:
        return vectors
    if dimensions > vectors.shape[-1]:
        raise InvalidInputError(
            f"parameters.dimensions: {dimensions} is more than the model's {vectors.shape[-1]}"
        )
    return np.ascontiguousarray(vectors[..., :dimensions])
