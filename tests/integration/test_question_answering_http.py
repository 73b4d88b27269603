"""question-answering over HTTP against the session app: the answers recorded from the
transformers 4.x pipeline (tests/golden/qa_answers.json) on the committed tiny model."""

from __future__ import annotations

import concurrent.futures
import json
from pathlib import Path

import pytest

MODEL = "qa"
GOLDEN = Path(__file__).resolve().parents[1] / "golden"
CASES = json.loads((GOLDEN / "qa_answers.json").read_text())["models"]["tiny-distilbert-qa"][
    "cases"]
BY_NAME = {case["name"]: case for case in CASES}


def _post(http, payload, status=200):
    response = http.post(f"/models/{MODEL}", json=payload)
    assert response.status_code == status, response.text
    return response.json()


def _expected(case):
    """The pipeline's answer in this server's shapes (a list per input when top_k > 1, a
    list for list inputs: the pipeline unwraps single answers and lists of one input)."""
    top_k = case["parameters"].get("top_k", 1)
    answer = case["expected"]

    def one(value):
        return value if top_k == 1 or isinstance(value, list) else [value]

    if isinstance(case["inputs"], list):
        return [one(a) for a in (answer if len(case["inputs"]) > 1 else [answer])]
    return one(answer)


def _assert_same(got, expected) -> None:
    if isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), (got, expected)
        for mine, theirs in zip(got, expected, strict=True):
            _assert_same(mine, theirs)
        return
    assert set(got) == {"score", "start", "end", "answer"}, got
    assert {k: got[k] for k in ("start", "end", "answer")} == {
        k: expected[k] for k in ("start", "end", "answer")}, (got, expected)
    assert abs(got["score"] - expected["score"]) < 1e-4, (got, expected)


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_golden_answers(http, case):
    answer = _post(http, {"inputs": case["inputs"], "parameters": case["parameters"]})
    _assert_same(answer, _expected(case))


@pytest.mark.parametrize(("inputs", "fragment"), [
    ({"question": "where?"}, "inputs"),
    ({"context": "paris is a city."}, "inputs"),
    ({"question": "where?", "context": "paris", "answer": "x"}, "inputs"),
    ({"question": "  ", "context": "paris is a city."}, "inputs.question is empty"),
    ({"question": "where?", "context": ""}, "inputs.context is empty"),
    ([{"question": "where?", "context": "paris"}, "paris"], "inputs[1] must be an object"),
    ("where is paris?", "inputs must be an object with 'question' and 'context'"),
])
def test_bad_inputs_are_422(http, inputs, fragment):
    body = _post(http, {"inputs": inputs}, status=422)
    assert set(body) == {"error", "error_type"}
    assert body["error_type"] == "validation"
    assert fragment in body["error"], body


@pytest.mark.parametrize(("parameters", "fragment"), [
    ({"top_k": 0}, "top_k"),
    ({"top_k": "two"}, "top_k"),
    ({"max_answer_len": 0}, "max_answer_len"),
    ({"doc_stride": -3}, "doc_stride"),
    ({"max_seq_len": 32, "doc_stride": 64}, "doc_stride"),
    ({"doc_stride": 500}, "doc_stride"),  # larger than max_seq_len once capped to 128
    ({"max_seq_len": 24, "doc_stride": 20}, "doc_stride"),  # too little room per window
    ({"handle_impossible_answer": "maybe"}, "handle_impossible_answer"),
    ({"aggregation_strategy": "simple"}, "aggregation_strategy"),
])
def test_bad_parameters_are_422(http, parameters, fragment):
    case = BY_NAME["long_default"]
    body = _post(http, {"inputs": case["inputs"], "parameters": parameters}, status=422)
    assert set(body) == {"error", "error_type"}
    assert fragment in body["error"], body


def test_question_too_long_for_the_window_is_422(http):
    inputs = {"question": " ".join(["what"] * 40), "context": BY_NAME["long_default"]["inputs"][
        "context"]}
    body = _post(http, {"inputs": inputs, "parameters": {"max_seq_len": 32}}, status=422)
    assert body["error_type"] == "input_too_long" and "question" in body["error"]


def test_other_models_refuse_question_objects(http):
    response = http.post("/models/sentiment", json={"inputs": {"question": "q?",
                                                               "context": "c"}})
    assert response.status_code == 422, response.text
    assert response.json()["error_type"] == "validation"


def test_concurrent_requests_get_their_own_answers(http):
    jobs = [CASES[i % len(CASES)] for i in range(24)]

    def call(case):
        return _post(http, {"inputs": case["inputs"], "parameters": case["parameters"]})

    with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
        answers = list(pool.map(call, jobs))
    for case, answer in zip(jobs, answers, strict=True):
        _assert_same(answer, _expected(case))


def test_handle_api_answers_like_http(handle):
    case = BY_NAME["batch"]
    answer = handle.infer.remote(MODEL, {"inputs": case["inputs"]}).result(timeout_s=60)
    _assert_same(answer, _expected(case))


def test_listed_and_healthy(http):
    cards = {card["id"]: card for card in http.get("/v1/models").json()["data"]}
    assert cards[MODEL]["task"] == "question-answering"
    assert http.get("/health").json()["models"][MODEL] == "ok"
