"""Endpoints computed from a sentence embedding model's vectors ("views").

They let the offline default application answer more than embeddings with only the real
all-MiniLM-L6-v2 weights: rerank, zero-shot classification by similarity to the labels,
and extractive summarization. They share the embedding model's replicas: the model
deployment embeds the texts as for feature-extraction, and the view's ``format`` turns the
vectors into its answer where the request's texts and parameters are at hand.
These are embedding heuristics, not the fine-tuned NLI or abstractive models of the Hub
profile; the README says so.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from serving.errors import InvalidInputError
from serving.tasks.base import Task, TaskInputs, TruncatedEitherSide, check_text
from serving.tasks.zero_shot import CandidateLabelParameters

# Temperature of the softmax over label similarities: cosine similarities of sentence
# embeddings sit in a narrow band, so they are sharpened before being read as probabilities.
ZERO_SHOT_SCALE = 20.0
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\n+")


def split_sentences(text: str) -> list[str]:
    """Split a document into sentences at end punctuation and line breaks."""
    return [part.strip() for part in _SENTENCE_END.split(text) if part.strip()]


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = vectors.astype(np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


class ViewParameters(TruncatedEitherSide):
    """Views always work on normalized sentence embeddings."""

    normalize: bool = True


def _vectors(results: list[Any]) -> np.ndarray:
    vectors = np.asarray(results, dtype=np.float32)
    if vectors.ndim != 2:
        raise InvalidInputError(
            "this endpoint needs a sentence embedding model (one with a sentence-transformers "
            "pooling config, or `pooling` set in the config)"
        )
    return _unit(vectors)


class TextRankingParameters(ViewParameters):
    top_n: int | None = Field(None, ge=1, le=10_000, description="Return the n best texts.")
    return_text: bool = Field(False, description="Include each text in its entry.")


class TextRanking(Task):
    """``{"query", "texts"}`` → texts sorted by cosine similarity to the query, as TEI's
    /rerank answers: ``[{"index", "score"(, "text")}]``."""

    name: ClassVar[str] = "text-ranking"
    tei_routes: ClassVar[frozenset[str]] = frozenset({"rerank", "tokenize"})
    parameters = TextRankingParameters
    probe_inputs = {"query": "health", "texts": ["check"]}

    @classmethod
    def parse_inputs(cls, inputs: Any, max_inputs: int, params: Any = None) -> TaskInputs:
        if not isinstance(inputs, dict) or set(inputs) != {"query", "texts"}:
            raise InvalidInputError('inputs must be {"query": str, "texts": [str]}')
        texts = inputs["texts"]
        if not isinstance(texts, list) or not texts:
            raise InvalidInputError("inputs.texts must be a non-empty list of strings")
        if len(texts) + 1 > max_inputs:
            raise InvalidInputError(f"inputs has {len(texts) + 1} texts, more than {max_inputs}")
        query = check_text(inputs["query"], "inputs.query")
        rows = [query] + [check_text(t, f"inputs.texts[{i}]") for i, t in enumerate(texts)]
        return TaskInputs(rows, None, single=True)

    @classmethod
    def format(cls, results: list[Any], inputs: TaskInputs, params: Any = None) -> Any:
        vectors = _vectors(results)
        scores = vectors[1:] @ vectors[0]
        ranked = sorted(range(len(scores)), key=lambda i: -scores[i])
        if params is not None and params.top_n is not None:
            ranked = ranked[: params.top_n]
        entries = []
        for index in ranked:
            entry: dict[str, int | float | str] = {"index": index, "score": float(scores[index])}
            if params is not None and params.return_text:
                entry["text"] = inputs.texts[index + 1]
            entries.append(entry)
        return entries


class EmbeddingZeroShotParameters(CandidateLabelParameters, ViewParameters):
    """The NLI task's label parameters, on normalized embeddings."""


class EmbeddingZeroShot(Task):
    """Zero-shot classification by cosine similarity between each text and each label's
    description (``hypothesis_template`` filled with the label). Single-label scores are a
    softmax of ``ZERO_SHOT_SCALE`` × similarity; multi-label scores are the similarities
    clipped to [0, 1]."""

    name: ClassVar[str] = "zero-shot-classification"
    tei_routes: ClassVar[frozenset[str]] = frozenset({"tokenize"})
    parameters = EmbeddingZeroShotParameters
    probe_parameters: ClassVar[dict[str, Any]] = {"candidate_labels": ["health"]}

    @classmethod
    def parse_inputs(cls, inputs: Any, max_inputs: int, params: Any = None) -> TaskInputs:
        parsed = super().parse_inputs(inputs, max_inputs)
        if params is None:
            return parsed
        labels = [params.hypothesis_template.format(label) for label in params.candidate_labels]
        if len(parsed.texts) + len(labels) > max_inputs:
            raise InvalidInputError(
                f"{len(parsed.texts)} inputs and {len(labels)} labels are more than "
                f"{max_inputs} texts per request"
            )
        return TaskInputs(parsed.texts + labels, None, parsed.single,
                          groups=(len(parsed.texts), len(labels)))

    @classmethod
    def format(cls, results: list[Any], inputs: TaskInputs, params: Any = None) -> Any:
        vectors = _vectors(results)
        count = inputs.groups[0]
        similarity = vectors[:count] @ vectors[count:].T  # [texts, labels]
        if params.multi_label:
            scores = np.clip(similarity, 0.0, 1.0)
        else:
            logits = ZERO_SHOT_SCALE * similarity
            scores = np.exp(logits - logits.max(axis=1, keepdims=True))
            scores /= scores.sum(axis=1, keepdims=True)
        labels = params.candidate_labels
        answers = []
        for text, row in zip(inputs.texts[:count], scores, strict=True):
            order = sorted(range(len(labels)), key=lambda i: -row[i])
            answers.append({"sequence": text, "labels": [labels[i] for i in order],
                            "scores": [float(row[i]) for i in order]})
        return answers[0] if inputs.single else answers


class ExtractiveSummarizationParameters(ViewParameters):
    max_sentences: int = Field(3, ge=1, le=100, description="Sentences kept per summary.")


class ExtractiveSummarization(Task):
    """Summaries made of a document's most central sentences (those most similar to the
    rest of the document), kept in their original order: ``[{"summary_text"}]`` per input,
    like the Inference API."""

    name: ClassVar[str] = "summarization"
    parameters = ExtractiveSummarizationParameters

    @classmethod
    def parse_inputs(cls, inputs: Any, max_inputs: int, params: Any = None) -> TaskInputs:
        parsed = super().parse_inputs(inputs, max_inputs)
        documents = [split_sentences(text) for text in parsed.texts]
        flat = [sentence for document in documents for sentence in document]
        if len(flat) > max_inputs:
            raise InvalidInputError(f"inputs have {len(flat)} sentences, more than {max_inputs}")
        groups = tuple(len(document) for document in documents)
        return TaskInputs(flat, None, parsed.single, groups=groups)

    @classmethod
    def format(cls, results: list[Any], inputs: TaskInputs, params: Any = None) -> Any:
        vectors = _vectors(results)
        keep = params.max_sentences if params is not None else 3
        answers, start = [], 0
        for count in inputs.groups:
            document = vectors[start : start + count]
            centrality = (document @ document.T).sum(axis=1)
            chosen = sorted(np.argsort(-centrality, kind="stable")[:keep].tolist())
            sentences = inputs.texts[start : start + count]
            answers.append({"summary_text": " ".join(sentences[i] for i in chosen)})
            start += count
        return answers


VIEWS: dict[str, type[Task]] = {
    task.name: task for task in (TextRanking, EmbeddingZeroShot, ExtractiveSummarization)
}
