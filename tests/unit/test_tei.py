"""TEI request/answer translation (serving/tei.py), without Ray."""

from __future__ import annotations

import pytest

from serving.errors import InvalidInputError
from serving.schemas.tei import TeiPredictRequest, TeiRerankRequest
from serving.tei import (
    check_route,
    model_type,
    predict_answer,
    predict_requests,
    rerank_answer,
    rerank_request,
)


@pytest.mark.parametrize(("inputs", "expected", "single"), [
    ("a", [["a"]], True),
    (["a"], [["a"]], True),
    (["a", "b"], [[{"text": "a", "text_pair": "b"}]], True),
    ([["a"], ["b"]], [["a", "b"]], False),
])
def test_predict_inputs(inputs, expected, single):
    requests, _, is_single = predict_requests(TeiPredictRequest(inputs=inputs))
    assert [[i if isinstance(i, str) else i.model_dump() for i in r.inputs]
            for r in requests] == expected
    assert is_single is single


def test_a_mixed_batch_runs_as_two_requests_and_keeps_its_order():
    body = TeiPredictRequest(inputs=[["a"], ["b", "c"], ["d"]], raw_scores=True,
                             truncate=False)
    requests, inputs, single = predict_requests(body)
    assert inputs == [[0, 2], [1]] and not single
    assert all(r.parameters == {"function_to_apply": "none", "truncation": False}
               for r in requests)
    assert predict_answer([["A", "D"], ["BC"]], inputs, single) == ["A", "BC", "D"]


def test_a_sequence_has_one_or_two_texts():
    with pytest.raises(InvalidInputError, match=r"inputs\[0\].*3 strings"):
        predict_requests(TeiPredictRequest(inputs=[["a", "b", "c"]]))


def test_cross_encoder_rerank_sorts_and_needs_one_label():
    body = TeiRerankRequest(query="q", texts=["x", "y"], return_text=True)
    request = rerank_request(body, "text-classification")
    assert [pair.model_dump() for pair in request.inputs] == [
        {"text": "q", "text_pair": "x"}, {"text": "q", "text_pair": "y"}]
    answer = [[{"label": "LABEL_0", "score": 0.2}], [{"label": "LABEL_0", "score": 0.9}]]
    assert rerank_answer(answer, body, "text-classification") == [
        {"index": 1, "score": 0.9, "text": "y"}, {"index": 0, "score": 0.2, "text": "x"}]
    two_labels = [[{"label": "a", "score": 0.5}, {"label": "b", "score": 0.5}]]
    with pytest.raises(InvalidInputError, match="2 labels"):
        rerank_answer(two_labels, body, "text-classification")


def test_routes_name_the_task_they_need():
    check_route("embed", "minilm", "feature-extraction")
    with pytest.raises(InvalidInputError, match="'gpt2' is a text-generation model"):
        check_route("tokenize", "gpt2", "text-generation")


def test_model_type_as_tei_reports_it():
    assert model_type("feature-extraction", {"pooling": "mean"}) == {
        "embedding": {"pooling": "mean"}}
    assert model_type("text-classification", {"id2label": {0: "NEG", 1: "POS"}}) == {
        "classifier": {"id2label": {"0": "NEG", "1": "POS"}, "label2id": {"NEG": 0, "POS": 1}}}
    assert "reranker" in model_type("text-classification", {"id2label": {0: "LABEL_0"}})
