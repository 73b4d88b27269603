"""Rerank dialects over HTTP, driven by the real ``cohere`` client: Cohere's /v1/rerank (also
Jina's and vLLM's) and /v2/rerank, vLLM's /score; scores equal sentence-transformers'."""

from __future__ import annotations

import math

import cohere
import numpy as np
import pytest
import torch
from cohere.errors import BadRequestError, NotFoundError, UnprocessableEntityError
from sentence_transformers import CrossEncoder, SentenceTransformer
from transformers import AutoTokenizer

QUERY = "Where do cats sleep?"
DOCUMENTS = ["Cats sleep on warm windowsills.", "The stock market fell today.",
             "A dog barks at the mailman.", "Kittens nap in cardboard boxes all day."]
# The tiny cross-encoder's scores lie within 1e-5 of each other: a tighter tolerance than
# the view's keeps the comparison able to tell documents apart.
CROSS_ENCODER_TOL = 1e-6
VIEW_TOL = 1e-5


@pytest.fixture(scope="module")
def v1(served_app):
    return cohere.Client(base_url=served_app, api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def v2(served_app):
    return cohere.ClientV2(base_url=served_app, api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def cross_encoder_scores(model_dirs):
    """``CrossEncoder.predict`` of (QUERY, each document): its default activation for one
    label is the sigmoid, as the text-classification pipeline's."""
    model = CrossEncoder(str(model_dirs["cross-encoder"]), device="cpu")
    assert isinstance(model.activation_fn, torch.nn.Sigmoid)
    return model.predict([(QUERY, document) for document in DOCUMENTS]).tolist()


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return SentenceTransformer(str(minilm_dir), device="cpu")


def _cosines(minilm, query: str, texts: list[str]) -> list[float]:
    return minilm.similarity(minilm.encode([query]), minilm.encode(texts))[0].tolist()


def _check_ranking(results, expected: list[float], tolerance: float, top_n: int) -> None:
    """``results`` (best first) are the ``top_n`` best documents with ``expected`` scores."""
    scores = [result.relevance_score for result in results]
    assert len(results) == top_n and scores == sorted(scores, reverse=True)
    for result in results:
        assert math.isclose(result.relevance_score, expected[result.index], abs_tol=tolerance)
    best = sorted(range(len(expected)), key=lambda i: -expected[i])
    assert min(expected[r.index] for r in results) >= expected[best[top_n - 1]] - tolerance


def test_v1_cross_encoder_equals_sentence_transformers(v1, cross_encoder_scores):
    response = v1.rerank(model="reranker", query=QUERY, documents=DOCUMENTS)
    _check_ranking(response.results, cross_encoder_scores, CROSS_ENCODER_TOL, len(DOCUMENTS))
    assert sorted(r.index for r in response.results) == [0, 1, 2, 3]
    # Documents come back unless refused (Jina's default; Cohere's clients read them).
    assert all(r.document.text == DOCUMENTS[r.index] for r in response.results)
    top = v1.rerank(model="reranker", query=QUERY, documents=DOCUMENTS, top_n=2,
                    return_documents=False)
    _check_ranking(top.results, cross_encoder_scores, CROSS_ENCODER_TOL, 2)
    assert all(r.document is None for r in top.results)
    assert top.meta.api_version.version == "1" and top.id != response.id


def test_v1_view_equals_sentence_transformers_cosines(v1, minilm):
    expected = _cosines(minilm, QUERY, DOCUMENTS)
    response = v1.rerank(model="minilm-rerank", query=QUERY, documents=DOCUMENTS, top_n=3)
    _check_ranking(response.results, expected, VIEW_TOL, 3)
    assert [r.index for r in response.results] == list(np.argsort(expected)[::-1][:3])


def test_v1_objects_and_rank_fields(v1, minilm):
    documents = [{"text": DOCUMENTS[1], "id": "stocks"}, {"text": DOCUMENTS[0], "id": "cats"}]
    response = v1.rerank(model="minilm-rerank", query=QUERY, documents=documents)
    assert response.results[0].document.text == DOCUMENTS[0]
    assert response.results[0].document.id == "cats"  # other fields come back whole
    titled = [{"title": "Finance", "body": DOCUMENTS[1]}, {"title": "Pets", "body": DOCUMENTS[0]}]
    ranked = v1.rerank(model="minilm-rerank", query=QUERY, documents=titled,
                       rank_fields=["title", "body"], return_documents=False)
    texts = [f"title: {d['title']}\nbody: {d['body']}" for d in titled]
    _check_ranking(ranked.results, _cosines(minilm, QUERY, texts), VIEW_TOL, 2)


def test_v1_as_jina_and_vllm_read_it_with_the_first_ranking_model(http, minilm_dir):
    """Jina's body (no ``model``: the first served model that reranks) and its answer's
    ``model``, ``usage`` and ``results[].document.text``."""
    response = http.post("/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS,
                                             "top_n": 2, "return_documents": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "minilm-rerank"  # the test app's first ranking model
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir))
    tokens = sum(len(ids) for ids in tokenizer([QUERY, *DOCUMENTS])["input_ids"])
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert [set(r) for r in body["results"]] == [{"index", "relevance_score", "document"}] * 2
    assert body["results"][0]["document"] == {"text": DOCUMENTS[body["results"][0]["index"]]}


def test_v2_with_both_kinds_of_model(v2, cross_encoder_scores, minilm):
    response = v2.rerank(model="reranker", query=QUERY, documents=DOCUMENTS, top_n=3,
                         max_tokens_per_doc=512)
    _check_ranking(response.results, cross_encoder_scores, CROSS_ENCODER_TOL, 3)
    assert response.meta.api_version.version == "2"
    assert "document" not in response.results[0].model_dump(exclude_none=True)
    view = v2.rerank(model="minilm-rerank", query=QUERY, documents=DOCUMENTS)
    _check_ranking(view.results, _cosines(minilm, QUERY, DOCUMENTS), VIEW_TOL, 4)


@pytest.mark.parametrize(("kwargs", "mentions"), [
    ({"model": "reranker", "documents": []}, "documents"),
    ({"model": "reranker", "documents": DOCUMENTS, "top_n": 0}, "top_n"),
    ({"model": "tiny-st", "documents": DOCUMENTS}, "feature-extraction model; /v1/rerank needs "
                                                   "a cross-encoder"),
    ({"model": "sentiment", "documents": DOCUMENTS}, "classifier with 2 labels"),
])
def test_v1_bad_requests_raise_the_typed_error(v1, kwargs, mentions):
    with pytest.raises(BadRequestError) as info:  # 400, in OpenAI's shape as on /v1/...
        v1.rerank(query=QUERY, **kwargs)
    assert mentions in info.value.body["error"]["message"]


@pytest.mark.parametrize(("kwargs", "mentions"), [
    ({"model": "reranker", "documents": []}, "documents"),
    ({"model": "minilm-rerank", "documents": DOCUMENTS, "top_n": 0}, "top_n"),
    ({"model": "emotions", "documents": DOCUMENTS}, "/v2/rerank needs a cross-encoder"),
])
def test_v2_bad_requests_raise_the_typed_error(v2, kwargs, mentions):
    with pytest.raises(UnprocessableEntityError) as info:  # 422, {"error", "error_type"}
        v2.rerank(query=QUERY, **kwargs)
    assert mentions in info.value.body["error"]
    assert info.value.body["error_type"] in {"validation", "wrong_model_kind"}


def test_unknown_models_are_not_found(v1, v2):
    with pytest.raises(NotFoundError) as info:
        v1.rerank(model="rerank-v3.5", query=QUERY, documents=DOCUMENTS)
    assert "rerank-v3.5" in info.value.body["error"]["message"]
    with pytest.raises(NotFoundError):
        v2.rerank(model="rerank-v3.5", query=QUERY, documents=DOCUMENTS)


def test_score_one_to_many_and_pairwise(http, cross_encoder_scores, minilm):
    one_to_many = {"model": "reranker", "text_1": QUERY, "text_2": DOCUMENTS}
    body = http.post("/score", json=one_to_many).json()
    assert body["object"] == "list" and body["model"] == "reranker"
    assert [d["index"] for d in body["data"]] == [0, 1, 2, 3]
    np.testing.assert_allclose([d["score"] for d in body["data"]], cross_encoder_scores,
                               atol=CROSS_ENCODER_TOL)
    assert http.post("/v1/score", json=one_to_many).json()["data"] == body["data"]
    queries = [QUERY, "What fell today?", QUERY]
    pairwise = http.post("/v1/score", json={"model": "minilm-rerank", "text_1": queries,
                                            "text_2": DOCUMENTS[:3]}).json()
    expected = [_cosines(minilm, q, [d])[0] for q, d in zip(queries, DOCUMENTS[:3], strict=True)]
    np.testing.assert_allclose([d["score"] for d in pairwise["data"]], expected, atol=VIEW_TOL)
    assert pairwise["usage"]["total_tokens"] > 0


def test_score_refusals_in_each_dialect(http):
    bad = {"model": "reranker", "text_1": ["a", "b"], "text_2": ["c", "d", "e"]}
    response = http.post("/score", json=bad)
    assert response.status_code == 422 and "1:1, 1:N or N:N" in response.json()["error"]
    response = http.post("/v1/score", json=bad)
    assert response.status_code == 400
    assert "1:1, 1:N or N:N" in response.json()["error"]["message"]
    response = http.post("/score", json={"model": "tiny-st", "text_1": "a", "text_2": "b"})
    assert response.status_code == 422 and "/score needs a cross-encoder" in response.text


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/rerank", {"query": "", "documents": ["a"]}),
    ("/v1/rerank", {"model": "reranker", "query": "q", "documents": ["", "a"]}),
    ("/v1/rerank", {"model": "minilm-rerank", "query": "q", "documents": [" \t"]}),
    ("/v1/rerank", {"model": 5, "query": "q", "documents": ["a"]}),
    ("/v1/rerank", {"query": "q", "documents": ["a"], "top_n": 1e308}),
    ("/v1/rerank", {"model": "reranker", "query": "q", "documents": ["a"] * 300}),
    ("/v1/rerank", {"model": "gpt2", "query": "q", "documents": ["a"]}),
    ("/v2/rerank", {"model": "customers", "query": "q", "documents": ["a"]}),
    ("/v2/rerank", {"model": "customers/m00", "query": "q", "documents": ["a"]}),
    ("/v2/rerank", {"model": "minilm-rerank", "query": "q", "documents": ["a"] * 256}),
    ("/score", {"text_1": [], "text_2": ["a"]}),
    ("/score", {"text_1": "", "text_2": ""}),
    ("/v1/score", {"model": "reranker", "text_1": ["a"] * 200, "text_2": ["b"] * 200}),
])
def test_odd_bodies_answer_a_json_4xx_or_200(http, path, body):
    response = http.post(path, json=body)
    assert response.status_code < 500, response.text
    answer = response.json()
    if response.status_code >= 400:
        message = answer["error"]["message"] if path.startswith("/v1/") else answer["error"]
        assert message, response.text
