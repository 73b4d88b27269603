"""feature-extraction: sentence embeddings as sentence-transformers computes them, or token
embeddings exactly like ``transformers.pipeline("feature-extraction")`` when the model has
no sentence-transformers pooling config."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from serving.errors import InvalidInputError, WrongModelKindError
from serving.pooling import pool, sentence_transformers_pooling
from serving.prompts import Prompts
from serving.quantization import Precision, check_ranged_count, quantize, quantize_matrices
from serving.sparse import (
    SparseVector,
    SpladeConfig,
    sparse_rows,
    splade_config,
    splade_pool,
    splade_refusal,
)
from serving.tasks.base import (
    RowTokens,
    Task,
    TaskInputs,
    TaskParameters,
    TruncatedEitherSide,
    check_text,
    own_parameters,
)


class FeatureExtractionParameters(TruncatedEitherSide):
    normalize: bool | None = Field(
        None, description="L2-normalize sentence embeddings (default: the model's config)."
    )
    dimensions: int | None = Field(
        None, ge=1, description="Keep the first n dimensions of each embedding (Matryoshka "
        "style), normalized afterwards when embeddings are normalized.",
    )
    prompt_name: str | None = Field(
        None, description="A prompt of the model's sentence-transformers config (e.g. "
        "'query') put before each text; default: the config's default_prompt_name, if any.",
    )
    precision: Precision = Field(
        "float32", description="Quantize the embeddings as sentence-transformers' "
        "encode(precision=...) does: int8/uint8 scale each dimension by its minimum and "
        "maximum over this request's embeddings (at least 2 inputs); binary/ubinary pack "
        "one bit (> 0) per dimension, 8 to a byte (binary: byte - 128, as int8).",
    )


    token_embeddings: bool = Field(
        False, description="Every token's vector, without pooling (TEI's /embed_all), in the "
        "shape of a model without pooling: [1, tokens, dim] per input.",
    )

    def batch_key(self) -> tuple:
        # Token embeddings and pooled ones are different forward passes.
        return (*super().batch_key(), self.token_embeddings)


class FeatureExtraction(Task):
    name: ClassVar[str] = "feature-extraction"
    tei_routes: ClassVar[frozenset[str]] = frozenset(
        {"embed", "similarity", "tokenize", "embed_sparse", "embed_all"})
    parameters = FeatureExtractionParameters
    takes_prompts: ClassVar[bool] = True

    def __init__(self, pooling: tuple[str, ...] | None, normalize: bool,
                 splade: SpladeConfig | None = None) -> None:
        self.pooling = pooling  # None: token embeddings, like transformers.pipeline
        self.normalize = normalize
        self.splade = splade  # a SPLADE model (a masked LM): sparse vectors of its logits

    @classmethod
    def from_model(
        cls, model: Any, source: str, revision: str | None = None,
        pooling: str = "auto", normalize: bool | None = None,
    ) -> FeatureExtraction:
        splade = splade_config(source, revision) if pooling == "auto" else None
        if splade is not None:
            return cls(None, False, splade)
        prescribed = sentence_transformers_pooling(source, revision)
        st_modes, st_normalize = prescribed or (None, False)
        if pooling == "auto":
            modes = st_modes
        else:
            modes = None if pooling == "none" else (pooling,)
        return cls(modes, st_normalize if normalize is None else normalize)

    @classmethod
    def model_class_for(cls, source: str, revision: str | None = None,
                        pooling: str = "auto") -> str:
        if pooling == "auto" and splade_config(source, revision) is not None:
            return "AutoModelForMaskedLM"  # SPLADE pools the MLM head's logits
        return cls.model_class

    @classmethod
    def parse_inputs(
        cls, inputs: Any, max_inputs: int, params: TaskParameters | None = None
    ) -> TaskInputs:
        """Texts to embed, or ``{"source_sentence", "sentences"}`` to compare (the
        Inference API's sentence-similarity payload)."""
        precision = getattr(params, "precision", "float32")
        if not isinstance(inputs, dict):
            parsed = super().parse_inputs(inputs, max_inputs, params)
            check_ranged_count(precision, len(parsed.texts), "parameters.precision")
            return parsed
        if precision != "float32":
            raise InvalidInputError("parameters.precision: sentence-similarity answers "
                                    "scores, not embeddings to quantize")
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

    @classmethod
    def prompted(cls, inputs: TaskInputs, params: TaskParameters, prompts: Prompts
                 ) -> TaskInputs:
        name = own_parameters(params, FeatureExtractionParameters).prompt_name
        return replace(inputs, texts=prompts.apply(inputs.texts, name))

    @classmethod
    def format(cls, results: list[Any], inputs: TaskInputs, params: Any = None) -> Any:
        # Sparse vectors (SPLADE) answer TEI's entries: [{"index", "value"}, ...] per text.
        results = [r.entries() if isinstance(r, SparseVector) else r for r in results]
        return super().format(results, inputs, params)

    def forward_mode(self, params: TaskParameters) -> str:
        problem = None if self.splade is None else splade_refusal(params)
        if problem is not None:  # TEI answers these 424 (a model of the wrong kind)
            raise WrongModelKindError(problem)
        wants_tokens = getattr(params, "token_embeddings", False)  # views: own params
        return "tokens" if wants_tokens and self.pooling is not None else ""

    def forward(self, engine: Any, batch: dict[str, Any]) -> list[Any]:
        mask = batch["attention_mask"]
        if self.splade is not None:
            return sparse_rows(splade_pool(engine.forward(batch).logits, mask, self.splade))
        hidden = engine.forward(batch).last_hidden_state
        if self.pooling is None:
            return _token_rows(hidden, mask)
        return list(pool(hidden, mask, self.pooling).float().cpu().numpy())

    def forward_in_mode(self, engine: Any, batch: dict[str, Any], mode: str) -> list[Any]:
        if mode != "tokens":
            return super().forward_in_mode(engine, batch, mode)
        return _token_rows(engine.forward(batch).last_hidden_state, batch["attention_mask"])

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
            answers = super().postprocess_request(outputs, params, layout)
            return _quantized(answers, getattr(params, "precision", "float32"))
        if self.pooling is None:
            raise WrongModelKindError(
                "sentence-similarity needs a sentence embedding model (one with a "
                "sentence-transformers pooling config, or `pooling` set in the config)"
            )
        vectors = _first_dimensions(np.stack(outputs).astype(np.float32), params)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return [(vectors[1:] @ vectors[0]).tolist()]  # cosine similarity to the source

    def postprocess(self, output: Any, params: TaskParameters) -> Any:
        if isinstance(output, SparseVector):  # TEI's /embed normalize: false: the dense one
            return output.dense() if getattr(params, "normalize", None) is False else output
        # Arrays stay arrays: they cross Ray as raw buffers and are written to JSON by orjson
        # without a Python float per number (the handle API turns them into lists).
        output = _first_dimensions(output, params)
        if output.ndim == 2:  # token embeddings
            return output[None]  # pipeline shape: [1, tokens, dim] per input
        requested = getattr(params, "normalize", None)  # views reuse this with own params
        normalize = self.normalize if requested is None else requested
        if normalize:
            output = output / max(float(np.linalg.norm(output)), 1e-12)
        return output


def _token_rows(hidden: Any, mask: Any) -> list[np.ndarray]:
    """Each row's token embeddings ``[tokens, dim]``, padding cut off."""
    lengths = mask.sum(dim=1).tolist()
    tokens = hidden.float().cpu().numpy()
    return [tokens[i, :n] for i, n in enumerate(lengths)]


def _quantized(answers: list[np.ndarray], precision: str) -> list[np.ndarray]:
    """One request's answers at ``precision``: quantized together, since int8/uint8 take
    their ranges from the request's embeddings (token embeddings: from all their tokens)."""
    if precision == "float32":
        return answers
    if answers[0].ndim == 1:
        return list(quantize(np.stack(answers), precision))
    matrices = quantize_matrices([answer[0] for answer in answers], precision)
    return [matrix[None] for matrix in matrices]  # pipeline shape: [1, tokens, dim]


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
