"""Rerank dialects (Cohere's ``/v1/rerank`` and ``/v2/rerank``, Jina's, vLLM's ``/score``)
translated to TEI's rerank and answered back.

Ranking itself is TEI's (:func:`serving.tei.rerank_request`, :func:`serving.tei.rerank_answer`):
a cross-encoder (a text-classification model with one label) scores each (query, document)
pair with the sigmoid of its logit; a text-ranking view scores the cosine similarity of
their embeddings. Here only the dialects' fields: documents as objects, ``top_n``,
``return_documents``, vLLM's pairing of ``text_1`` with ``text_2``, and the answers' shapes.
No Ray and no FastAPI here.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from serving.errors import InvalidInputError, WrongModelKindError
from serving.schemas.rerank import Document
from serving.schemas.tei import TeiRerankRequest

NEEDED = ("a cross-encoder (a text-classification model with one label) or a text-ranking "
          "view of an embedding model")


def reranks(task: str, labels: int | None) -> bool:
    """Whether a ``task`` model (a classifier: with ``labels`` labels) can rerank."""
    return task == "text-ranking" or (task == "text-classification" and labels == 1)


def check_ranker(name: str, task: str, labels: int | None, route: str) -> None:
    """Raises ``WrongModelKindError`` naming what ``route`` needs when model ``name`` (a
    ``task`` model; a classifier: with ``labels`` labels) cannot rerank."""
    if reranks(task, labels):
        return
    kind = (f"a classifier with {labels} labels" if task == "text-classification"
            else f"a {task} model")
    raise WrongModelKindError(f"model: {name!r} is {kind}; {route} needs {NEEDED}")


def ranking_request(query: str, texts: list[str]) -> TeiRerankRequest:
    """TEI's rerank body ranking ``texts`` for ``query`` (scores, not logits; no texts)."""
    return TeiRerankRequest(query=query, texts=texts)


def document_texts(documents: Sequence[Document], rank_fields: list[str] | None) -> list[str]:
    """The text ranked for each document: a string itself; an object its ``text``, or with
    ``rank_fields`` its ``field: value`` lines in that order (YAML, as Cohere advises for
    structured documents).

    Raises:
        InvalidInputError: naming a document that lacks a field.
    """
    texts = []
    for i, document in enumerate(documents):
        fields = {"text": document} if isinstance(document, str) else document
        if rank_fields is None:
            if "text" not in fields:
                raise InvalidInputError(
                    f"documents[{i}]: an object needs a 'text' field (or name the fields to "
                    "rank on in rank_fields)")
            texts.append(fields["text"])
            continue
        missing = [field for field in rank_fields if field not in fields]
        if missing:
            raise InvalidInputError(f"documents[{i}]: has no field {missing[0]!r} of rank_fields")
        texts.append("\n".join(f"{field}: {fields[field]}" for field in rank_fields))
    return texts


def results(ranks: list[dict], documents: Sequence[Document], top_n: int | None,
            return_documents: bool) -> list[dict[str, Any]]:
    """Cohere's results from TEI's entries ``{index, score}`` (best first): the ``top_n``
    best, each with its document (``{"text"}``, or the object sent) if asked."""
    answer = []
    for entry in ranks[:top_n]:
        result: dict[str, Any] = {"index": entry["index"], "relevance_score": entry["score"]}
        if return_documents:
            document = documents[entry["index"]]
            result["document"] = {"text": document} if isinstance(document, str) else document
        answer.append(result)
    return answer


def rerank_response(ranked: list[dict[str, Any]], model: str, tokens: int,
                    version: str) -> dict[str, Any]:
    """The answer of ``/v1/rerank`` (``version`` "1") or ``/v2/rerank`` ("2"): Cohere's
    fields with Jina's and vLLM's (``model``, ``usage``)."""
    return {
        "id": str(uuid.uuid4()), "model": model, "results": ranked,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        "meta": {"api_version": {"version": version},
                 "tokens": {"input_tokens": tokens, "output_tokens": 0}},
    }


def score_pairs(text_1: str | list[str], text_2: str | list[str]) -> list[tuple[str, str]]:
    """vLLM's pairs: one ``text_1`` with each ``text_2`` (1:1 or 1:N), or the i-th of each
    (N:N).

    Raises:
        InvalidInputError: for an empty list, or N ``text_1`` against another number.
    """
    firsts = [text_1] if isinstance(text_1, str) else text_1
    seconds = [text_2] if isinstance(text_2, str) else text_2
    if not firsts or not seconds:
        raise InvalidInputError(f"{'text_1' if not firsts else 'text_2'}: send at least one text")
    if len(firsts) == 1:
        return [(firsts[0], second) for second in seconds]
    if len(firsts) != len(seconds):
        raise InvalidInputError(
            f"text_2: {len(firsts)} text_1 need {len(firsts)} text_2 (pairs are 1:1, 1:N or "
            f"N:N), not {len(seconds)}")
    return list(zip(firsts, seconds, strict=True))


def score_groups(pairs: list[tuple[str, str]]) -> dict[str, list[int]]:
    """Per distinct first text, the pairs holding it: each becomes one ranking request."""
    groups: dict[str, list[int]] = {}
    for index, (first, _) in enumerate(pairs):
        groups.setdefault(first, []).append(index)
    return groups


def pair_scores(groups: dict[str, list[int]], ranks: list[list[dict]]) -> list[float]:
    """Each pair's score, in the pairs' order, from each group's TEI entries."""
    scores = [0.0] * sum(len(indices) for indices in groups.values())
    for indices, entries in zip(groups.values(), ranks, strict=True):
        for entry in entries:
            scores[indices[entry["index"]]] = entry["score"]
    return scores


def score_response(scores: list[float], model: str, tokens: int) -> dict[str, Any]:
    """vLLM's ``/score`` answer."""
    return {
        "id": f"score-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()),
        "model": model,
        "data": [{"index": i, "object": "score", "score": score} for i, score in enumerate(scores)],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0},
    }
