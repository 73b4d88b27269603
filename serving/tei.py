"""Text Embeddings Inference (TEI) requests as Inference API requests, and answers back.

TEI serves one model per server; here ``/embed`` and its siblings answer for the first
configured model that fits the route, and ``/models/{name}/embed`` (etc.) for a named one,
so a TEI client pointed at ``http://host:8000/models/{name}`` talks to that model.
No Ray and no FastAPI here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from serving.errors import InvalidInputError, WrongModelKindError
from serving.schemas.inference_api import InferenceRequest
from serving.schemas.tei import (
    TeiEmbedAllRequest,
    TeiEmbedRequest,
    TeiEmbedSparseRequest,
    TeiPredictRequest,
    TeiRerankRequest,
    TeiSimilarityRequest,
)

if TYPE_CHECKING:
    from typing_extensions import TypeIs

# One Inference API input made from a TEI sequence: a text, or {"text", "text_pair"}.
_Input = str | dict[str, str]


# Routes answered by every model that answers another one (``Task.tei_routes`` names that).
_ANSWERED_AS = {"decode": "tokenize"}


def answering_route(route: str) -> str:
    """The ``Task.tei_routes`` entry of the models answering TEI route ``route`` (a model
    that tokenizes for clients also decodes)."""
    return _ANSWERED_AS.get(route, route)


def route_tasks(route: str) -> list[str]:
    """The tasks (and embedding views) answering TEI route ``route`` (``Task.tei_routes``)."""
    from serving.tasks import TASKS
    from serving.tasks.embedding_views import VIEWS

    tasks, route = [*TASKS.values(), *VIEWS.values()], answering_route(route)
    return list(dict.fromkeys(task.name for task in tasks if route in task.tei_routes))


def check_route(route: str, name: str, task: str) -> None:
    """Raises ``WrongModelKindError`` when model ``name`` (a ``task`` model) cannot answer."""
    answering = route_tasks(route)
    if task not in answering:
        raise WrongModelKindError(
            f"model {name!r} is a {task} model; /{route} needs a {' or '.join(answering)} model"
        )


def _truncation(body: Any) -> dict[str, Any]:
    """The Inference API parameters of a TEI body's truncation fields."""
    found: dict[str, Any] = {} if body.truncate is None else {"truncation": body.truncate}
    if body.truncation_direction != "right":
        found["truncation_direction"] = body.truncation_direction
    return found


def _prompt(body: Any) -> dict[str, Any]:
    return {} if body.prompt_name is None else {"prompt_name": body.prompt_name}


def embed_request(body: TeiEmbedRequest) -> InferenceRequest:
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    parameters: dict[str, Any] = {"normalize": body.normalize, **_truncation(body),
                                  **_prompt(body)}
    if body.dimensions is not None:
        parameters["dimensions"] = body.dimensions
    return InferenceRequest(inputs=texts, parameters=parameters)


def embed_answer(vectors: list[Any]) -> list[Any]:
    """One vector per text (TEI answers a list of vectors, even for one text)."""
    if any(np.ndim(vector) != 1 for vector in vectors):
        raise WrongModelKindError(
            "this model gives token embeddings, not one vector per text; /embed needs a "
            "sentence embedding model (a sentence-transformers pooling config, or `pooling` "
            "set in the config)"
        )
    return vectors


# The routes that depend on whether an embedding model is SPLADE (its replica's details say
# ``pooling: splade``): /embed_sparse needs one, /embed_all refuses one (as TEI).
POOLING_ROUTES = frozenset({"embed_sparse", "embed_all"})


def answers_pooling(route: str, details: dict[str, Any]) -> bool:
    """Whether an embedding model whose replica reports ``details`` answers ``route``."""
    splade = details.get("pooling") == "splade"
    return splade if route == "embed_sparse" else not (route == "embed_all" and splade)


def check_pooling(route: str, name: str, details: dict[str, Any]) -> None:
    """Raises ``WrongModelKindError`` (TEI's 424) when embedding model ``name`` (its
    replica's ``details``) cannot answer ``route``."""
    if answers_pooling(route, details):
        return
    if route == "embed_sparse":
        raise WrongModelKindError(
            f"model {name!r} is not an embedding model with SPLADE pooling; /embed_sparse "
            "needs a sentence-transformers SparseEncoder (an MLM head and SpladePooling)"
        )
    raise WrongModelKindError(f"/{route} is not available for SPLADE models ({name!r}); "
                              "use /embed_sparse")


def embed_sparse_request(body: TeiEmbedSparseRequest) -> InferenceRequest:
    """A SPLADE model's default answer is its sparse vectors (no parameter needed)."""
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    return InferenceRequest(inputs=texts, parameters={**_truncation(body), **_prompt(body)})


def embed_all_request(body: TeiEmbedAllRequest) -> InferenceRequest:
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    parameters = {"token_embeddings": True, **_truncation(body), **_prompt(body)}
    return InferenceRequest(inputs=texts, parameters=parameters)


def embed_all_answer(answers: list[Any]) -> list[Any]:
    """Per text its token vectors ``[tokens, dim]`` (answers come as ``[1, tokens, dim]``,
    ``transformers.pipeline``'s shape)."""
    return [answer[0] for answer in answers]


def similarity_request(body: TeiSimilarityRequest) -> InferenceRequest:
    parameters = {} if body.parameters is None else {**_truncation(body.parameters),
                                                       **_prompt(body.parameters)}
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
            raise WrongModelKindError(
                f"this classifier has {len(labels)} labels; /rerank needs a cross-encoder "
                "(a text-classification model with one output)"
            )
        entry = {"index": index, "score": labels[0]["score"]}
        if body.return_text:
            entry["text"] = body.texts[index]
        ranks.append(entry)
    return sorted(ranks, key=lambda entry: entry["score"], reverse=True)


# The one label of a text-ranking view in TEI's /info (its scores are cosine similarities).
RANKING_LABEL = "score"
# Our pooling names that TEI spells otherwise.
_TEI_POOLING = {"lasttoken": "last_token"}


def model_type(task: str, details: dict[str, Any]) -> dict[str, Any]:
    """TEI's ``model_type`` from a model replica's ``details`` (``pooling``, ``id2label``).

    A ``text-ranking`` view (cosine ranking by an embedding model) is a reranker with one
    label, ``score``; a token-embedding model (no pooling) reports ``pooling: null``; a task
    TEI does not serve reports ``{"<task>": {}}``.
    """
    if task == "feature-extraction":
        pooling = details.get("pooling")
        return {"embedding": {"pooling": _TEI_POOLING.get(pooling or "", pooling)}}
    if task == "text-ranking":
        return {"reranker": _labels({"0": RANKING_LABEL})}
    if task == "text-classification":
        id2label = {str(i): label for i, label in details.get("id2label", {}).items()}
        return {"reranker" if len(id2label) == 1 else "classifier": _labels(id2label)}
    return {task: {}}


def _labels(id2label: dict[str, str]) -> dict[str, dict]:
    return {"id2label": id2label, "label2id": {v: int(k) for k, v in id2label.items()}}


def tokens_answer(details: list[list[dict]], offsets: str) -> list[list[dict]]:
    """TEI's ``/tokenize`` answer from a tokenizer's ``token_details``: ``start`` and
    ``stop`` are UTF-8 byte offsets (TEI's, ``offsets="bytes"``) or character offsets
    (``offsets="chars"``: Python's ``text[start:stop]``)."""
    start, stop = ("start", "stop") if offsets == "chars" else ("byte_start", "byte_stop")
    return [[{"id": token["id"], "text": token["text"], "special": token["special"],
              "start": token[start], "stop": token[stop]} for token in tokens]
            for tokens in details]


# --- POST / and /invocations: one route per model, as TEI picks it ------------------------

# What ``root_route`` answers for a body in the Inference API's shape.
INFERENCE_API = "inference-api"


def main_route(tei_model_type: dict[str, Any]) -> str | None:
    """The route TEI serves on ``POST /`` and ``/invocations`` for a model of TEI
    ``model_type`` (:func:`model_type`): a classifier's ``predict``, a reranker's
    ``rerank``, an embedding model's ``embed`` (``embed_sparse`` with SPLADE pooling);
    ``None`` for a model TEI does not serve."""
    if "classifier" in tei_model_type:
        return "predict"
    if "reranker" in tei_model_type:
        return "rerank"
    if "embedding" in tei_model_type:
        splade = tei_model_type["embedding"].get("pooling") == "splade"
        return "embed_sparse" if splade else "embed"
    return None


def root_route(main: str, body: Any) -> str:
    """Which route answers ``body`` posted to ``POST /`` of a model whose main route is
    ``main``: that route, except for what huggingface_hub's ``InferenceClient(base_url=...)``
    posts there besides TEI's bodies: ``{"inputs": {"source_sentence", "sentences"}}`` to an
    embedding model is ``similarity`` (TEI's ``/`` with ``TASK=sentence-similarity``), and
    any other body with ``parameters`` (no TEI body has them) is the Inference API's
    (:data:`INFERENCE_API`), answered as ``POST /models/{name}`` answers it."""
    if isinstance(body, dict):
        if main == "embed" and isinstance(body.get("inputs"), dict):
            return "similarity"
        if "parameters" in body:
            return INFERENCE_API
    return main

