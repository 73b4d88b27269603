"""Text Embeddings Inference (TEI) requests as Inference API requests, and answers back.

TEI serves one model per server; here ``/embed`` and its siblings answer for the first
configured model that fits the route, and ``/models/{name}/embed`` (etc.) for a named one,
so a TEI client pointed at ``http://host:8000/models/{name}`` talks to that model.
No Ray and no FastAPI here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from serving.errors import InvalidInputError
from serving.schemas.inference_api import InferenceRequest
from serving.schemas.tei import (
    TeiEmbedRequest,
    TeiPredictRequest,
    TeiRerankRequest,
    TeiSimilarityRequest,
)

if TYPE_CHECKING:
    from typing_extensions import TypeIs

# One Inference API input made from a TEI sequence: a text, or {"text", "text_pair"}.
_Input = str | dict[str, str]


def route_tasks(route: str) -> list[str]:
    """The tasks (and embedding views) answering TEI route ``route`` (``Task.tei_routes``)."""
    from serving.tasks import TASKS
    from serving.tasks.embedding_views import VIEWS

    tasks = [*TASKS.values(), *VIEWS.values()]
    return list(dict.fromkeys(task.name for task in tasks if route in task.tei_routes))


def check_route(route: str, name: str, task: str) -> None:
    """Raises ``InvalidInputError`` when model ``name`` (a ``task`` model) cannot answer."""
    answering = route_tasks(route)
    if task not in answering:
        raise InvalidInputError(
            f"model {name!r} is a {task} model; /{route} needs a {' or '.join(answering)} model"
        )


def _truncation(body: Any) -> dict[str, Any]:
    return {} if body.truncate is None else {"truncation": body.truncate}


def embed_request(body: TeiEmbedRequest) -> InferenceRequest:
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    parameters: dict[str, Any] = {"normalize": body.normalize, **_truncation(body)}
    if body.dimensions is not None:
        parameters["dimensions"] = body.dimensions
    return InferenceRequest(inputs=texts, parameters=parameters)


def embed_answer(vectors: list[Any]) -> list[Any]:
    """One vector per text (TEI answers a list of vectors, even for one text)."""
    if any(np.ndim(vector) != 1 for vector in vectors):
        raise InvalidInputError(
            "this model gives token embeddings, not one vector per text; /embed needs a "
            "sentence embedding model (a sentence-transformers pooling config, or `pooling` "
            "set in the config)"
        )
    return vectors


def similarity_request(body: TeiSimilarityRequest) -> InferenceRequest:
    parameters = _truncation(body.parameters) if body.parameters is not None else {}
    return InferenceRequest(inputs=body.inputs.model_dump(), parameters=parameters)


def predict_requests(
    body: TeiPredictRequest,
) -> tuple[list[InferenceRequest], list[list[int]], bool]:
    """The requests (texts and pairs go separately: a mixed batch becomes two), which
    inputs each holds, and whether TEI would answer one list of predictions (``True``) or
    one per input: a text, ``[text]`` or ``[text, pair]`` is one input, ``[[...], ...]`` a
    batch of texts and pairs."""
    data = body.inputs
    sequences: list[_Input]
    if isinstance(data, str):
        sequences, single = [data], True
    elif _is_one_sequence(data):
        sequences, single = [_sequence(data, "inputs")], True
    else:
        sequences = [_sequence(item, f"inputs[{i}]") for i, item in enumerate(data)]
        single = False
    parameters = {"function_to_apply": "none"} if body.raw_scores else {}
    parameters.update(_truncation(body))
    kinds: dict[bool, list[int]] = {}
    for index, sequence in enumerate(sequences):
        kinds.setdefault(isinstance(sequence, dict), []).append(index)
    requests = [
        InferenceRequest(inputs=[sequences[i] for i in indices], parameters=parameters)
        for indices in kinds.values()
    ]
    return requests, list(kinds.values()), single


def _is_one_sequence(data: list[str] | list[list[str]]) -> TypeIs[list[str]]:
    """Whether ``data`` is one sequence (strings) rather than a batch of them (lists);
    ``TeiPredictRequest`` admits no mix."""
    return all(isinstance(item, str) for item in data)


def _sequence(item: list[str], where: str) -> _Input:
    if len(item) == 1:
        return item[0]
    if len(item) == 2:
        return {"text": item[0], "text_pair": item[1]}
    raise InvalidInputError(
        f"{where}: a sequence is [text] or [text, text_pair], not {len(item)} strings"
    )


def predict_answer(answers: list[list[Any]], inputs: list[list[int]], single: bool) -> list:
    """Per input its predictions, in the request's order."""
    merged: list[Any] = [None] * sum(len(indices) for indices in inputs)
    for request_answers, indices in zip(answers, inputs, strict=True):
        for index, answer in zip(indices, request_answers, strict=True):
            merged[index] = answer
    return merged[0] if single else merged


def rerank_request(body: TeiRerankRequest, task: str) -> InferenceRequest:
    """A ``text-ranking`` view ranks by embedding cosine (``raw_scores`` changes nothing);
    a ``text-classification`` model (a cross-encoder) scores each (query, text) pair."""
    if task == "text-ranking":
        parameters = {"return_text": body.return_text, **_truncation(body)}
        return InferenceRequest(
            inputs={"query": body.query, "texts": body.texts}, parameters=parameters
        )
    pairs = [{"text": body.query, "text_pair": text} for text in body.texts]
    parameters = {"function_to_apply": "none"} if body.raw_scores else {}
    return InferenceRequest(inputs=pairs, parameters={**parameters, **_truncation(body)})


def rerank_answer(answer: list[Any], body: TeiRerankRequest, task: str) -> list[dict]:
    """Entries ``{index, score[, text]}``, best first."""
    if task == "text-ranking":
        return answer
    ranks = []
    for index, labels in enumerate(answer):
        if len(labels) != 1:
            raise InvalidInputError(
                f"this classifier has {len(labels)} labels; /rerank needs a cross-encoder "
                "(a text-classification model with one output)"
            )
        entry = {"index": index, "score": labels[0]["score"]}
        if body.return_text:
            entry["text"] = body.texts[index]
        ranks.append(entry)
    return sorted(ranks, key=lambda entry: entry["score"], reverse=True)


def model_type(task: str, details: dict[str, Any]) -> dict[str, Any]:
    """TEI's ``model_type`` from a model replica's ``details`` (``pooling``, ``id2label``)."""
    if task == "feature-extraction":
        return {"embedding": {"pooling": details.get("pooling")}}
    if task == "text-ranking":
        return {"reranker": {"pooling": details.get("pooling")}}
    if task == "text-classification":
        id2label = {str(i): label for i, label in details.get("id2label", {}).items()}
        labels = {"id2label": id2label, "label2id": {v: int(k) for k, v in id2label.items()}}
        return {"reranker" if len(id2label) == 1 else "classifier": labels}
    return {task: {}}
