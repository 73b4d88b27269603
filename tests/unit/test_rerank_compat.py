"""Rerank dialects (serving/rerank_compat.py, serving/schemas/rerank.py), without Ray: the
translation to TEI's rerank, the answers' shapes as the cohere client reads them, vLLM's
pairing rules."""

from __future__ import annotations

import pytest
from cohere.core.unchecked_base_model import construct_type
from cohere.types import RerankResponse as CohereRerankResponse
from cohere.v2.types import V2RerankResponse
from pydantic import ValidationError

from serving.errors import InvalidInputError, WrongModelKindError
from serving.rerank_compat import (
    check_ranker,
    document_texts,
    pair_scores,
    ranking_request,
    rerank_response,
    reranks,
    results,
    score_groups,
    score_pairs,
    score_response,
)
from serving.schemas.rerank import (
    RerankRequest,
    RerankResponse,
    RerankV2Request,
    ScoreRequest,
    ScoreResponse,
)
from serving.tei import rerank_answer, rerank_request

DOCUMENTS = ["a cat", {"text": "a dog", "id": "d1"}, "a bird"]
# TEI's entries, best first, as serving.tei.rerank_answer gives them.
RANKS = [{"index": 2, "score": 0.9}, {"index": 1, "score": 0.5}, {"index": 0, "score": 0.1}]


def test_document_texts_of_strings_and_objects():
    assert document_texts(DOCUMENTS, None) == ["a cat", "a dog", "a bird"]


def test_rank_fields_read_each_document_as_yaml_lines_in_their_order():
    documents = [{"title": "Cats", "text": "they purr"}, {"text": "dogs bark", "title": "Dogs"}]
    assert document_texts(documents, ["title", "text"]) == [
        "title: Cats\ntext: they purr", "title: Dogs\ntext: dogs bark"]
    assert document_texts(["plain"], ["text"]) == ["text: plain"]  # a string is its "text"


@pytest.mark.parametrize(("documents", "fields", "message"), [
    ([{"title": "no text"}], None, "documents[0]: an object needs a 'text' field"),
    (["x", {"text": "y"}], ["title"], "documents[0]: has no field 'title'"),
])
def test_documents_without_the_fields_ranked_are_refused(documents, fields, message):
    with pytest.raises(InvalidInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        document_texts(documents, fields)


def test_results_keep_the_order_cut_at_top_n_with_documents_as_sent():
    assert results(RANKS, DOCUMENTS, 2, True) == [
        {"index": 2, "relevance_score": 0.9, "document": {"text": "a bird"}},
        {"index": 1, "relevance_score": 0.5, "document": {"text": "a dog", "id": "d1"}},
    ]
    assert results(RANKS, DOCUMENTS, None, False) == [
        {"index": i, "relevance_score": s} for i, s in [(2, 0.9), (1, 0.5), (0, 0.1)]]
    assert len(results(RANKS, DOCUMENTS, 10, False)) == 3  # top_n past the end: all


def test_the_answer_reads_as_cohere_v1_and_v2_jina_and_vllm():
    found = results(RANKS, DOCUMENTS, None, True)
    body = rerank_response(found, "reranker", 12, "1")
    assert RerankResponse.model_validate(body).model_dump(exclude_none=True) == body
    assert body["usage"] == {"prompt_tokens": 12, "total_tokens": 12}  # Jina, vLLM, Infinity
    assert body["model"] == "reranker" and body["results"] == found
    cohere = construct_type(type_=CohereRerankResponse, object_=body)
    assert [(r.index, r.relevance_score) for r in cohere.results] == [(2, 0.9), (1, 0.5),
                                                                      (0, 0.1)]
    assert cohere.results[0].document.text == "a bird"
    assert cohere.meta.api_version.version == "1" and cohere.meta.tokens.input_tokens == 12
    v2 = construct_type(type_=V2RerankResponse,
                        object_=rerank_response(results(RANKS, DOCUMENTS, 1, False), "m", 3, "2"))
    assert [(r.index, r.relevance_score) for r in v2.results] == [(2, 0.9)]
    assert v2.meta.api_version.version == "2" and v2.id != body["id"]


def test_the_request_ranks_as_tei_does_for_each_kind_of_model():
    body = ranking_request("q", ["a", "b"])
    assert not body.raw_scores and not body.return_text
    view = rerank_request(body, "text-ranking")
    assert view.inputs.model_dump() == {"query": "q", "texts": ["a", "b"]}
    pairs = rerank_request(body, "text-classification")
    assert [p.model_dump() for p in pairs.inputs] == [{"text": "q", "text_pair": "a"},
                                                       {"text": "q", "text_pair": "b"}]
    assert pairs.parameters == {}  # the pipeline's sigmoid, as CrossEncoder.predict
    ranked = rerank_answer([[{"label": "LABEL_0", "score": 0.2}],
                            [{"label": "LABEL_0", "score": 0.7}]], body, "text-classification")
    assert ranked == [{"index": 1, "score": 0.7}, {"index": 0, "score": 0.2}]


@pytest.mark.parametrize(("task", "labels", "ok"), [
    ("text-ranking", None, True), ("text-classification", 1, True),
    ("text-classification", 2, False), ("feature-extraction", None, False),
])
def test_which_models_rerank(task, labels, ok):
    assert reranks(task, labels) is ok
    if ok:
        check_ranker("m", task, labels, "/v1/rerank")
        return
    with pytest.raises(WrongModelKindError, match="/v1/rerank needs a cross-encoder") as info:
        check_ranker("m", task, labels, "/v1/rerank")
    assert info.value.message.startswith("model: 'm' is a ")
    assert ("2 labels" if labels else task) in info.value.message


@pytest.mark.parametrize(("text_1", "text_2", "pairs"), [
    ("q", "a", [("q", "a")]),
    ("q", ["a", "b"], [("q", "a"), ("q", "b")]),
    (["q"], ["a", "b"], [("q", "a"), ("q", "b")]),
    (["q", "r"], ["a", "b"], [("q", "a"), ("r", "b")]),
])
def test_score_pairs_one_to_one_one_to_many_and_pairwise(text_1, text_2, pairs):
    assert score_pairs(text_1, text_2) == pairs


@pytest.mark.parametrize(("text_1", "text_2", "message"), [
    (["q", "r"], ["a"], "2 text_1 need 2 text_2"),
    (["q", "r"], ["a", "b", "c"], "2 text_1 need 2 text_2"),
    ([], ["a"], "text_1: send at least one text"),
    ("q", [], "text_2: send at least one text"),
])
def test_score_pairs_refused(text_1, text_2, message):
    with pytest.raises(InvalidInputError, match=message):
        score_pairs(text_1, text_2)


def test_scores_come_back_in_the_order_of_the_pairs():
    pairs = [("q", "a"), ("r", "b"), ("q", "c")]
    groups = score_groups(pairs)
    assert groups == {"q": [0, 2], "r": [1]}
    # Per group, TEI's entries best first, indexed within the group.
    ranks = [[{"index": 1, "score": 0.8}, {"index": 0, "score": 0.3}],
             [{"index": 0, "score": 0.6}]]
    scores = pair_scores(groups, ranks)
    assert scores == [0.3, 0.6, 0.8]
    body = score_response(scores, "reranker", 7)
    assert ScoreResponse.model_validate(body).model_dump() == body
    assert body["id"].startswith("score-") and body["object"] == "list"
    assert body["data"][2] == {"index": 2, "object": "score", "score": 0.8}
    assert body["usage"] == {"prompt_tokens": 7, "total_tokens": 7, "completion_tokens": 0}


@pytest.mark.parametrize(("schema", "body", "field"), [
    (RerankRequest, {"query": "q", "documents": []}, "documents"),
    (RerankRequest, {"query": "q", "documents": ["a"], "top_n": 0}, "top_n"),
    (RerankRequest, {"query": "q", "documents": [1]}, "documents"),
    (RerankRequest, {"query": "q", "documents": ["a"], "rank_fields": []}, "rank_fields"),
    (RerankRequest, {"query": "q", "documents": ["a"], "unknown": 1}, "unknown"),
    (RerankRequest, {"query": "q\ud800", "documents": ["a"]}, "lone surrogate"),
    (RerankV2Request, {"query": "q", "documents": ["a"]}, "model"),
    (RerankV2Request, {"model": "m", "query": "q", "documents": [{"text": "a"}]}, "documents"),
    (RerankV2Request, {"model": "m", "query": "q", "documents": ["a"],
                       "relevant_spans": {"mode": "enabled"}}, "relevant_spans"),
    (ScoreRequest, {"text_1": "q"}, "text_2"),
])
def test_schemas_refuse_bad_bodies_naming_the_field(schema, body, field):
    with pytest.raises(ValidationError, match=field):
        schema.model_validate(body)


def test_schemas_take_what_the_clients_send():
    # cohere.Client.rerank's body (its unset fields are left out).
    v1 = RerankRequest.model_validate({
        "model": "reranker", "query": "q", "documents": ["a", {"text": "b", "id": "1"}],
        "top_n": 1, "rank_fields": ["text"], "return_documents": False,
        "max_chunks_per_doc": 10})
    assert v1.return_documents is False and v1.documents[1] == {"text": "b", "id": "1"}
    assert RerankRequest(query="q", documents=["a"]).model is None  # Cohere v1: optional
    # cohere.ClientV2.rerank's.
    v2 = RerankV2Request.model_validate({"model": "m", "query": "q", "documents": ["a"],
                                          "top_n": 1, "max_tokens_per_doc": 512,
                                          "priority": 0})
    assert v2.return_documents is None
    assert ScoreRequest(text_1=["a", "b"], text_2=["c", "d"]).model is None
