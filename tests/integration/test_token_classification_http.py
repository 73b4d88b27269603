"""token-classification over HTTP against the session app, compared with
``transformers.pipeline("token-classification")`` on the same tiny NER model."""

from __future__ import annotations

import concurrent.futures

import pytest
from transformers import pipeline

MODEL = "ner"
TEXTS = ["paris is the capital of france and berlin is a city.", "  Paris   is  big ",
         "café 東京 🙂 playing music happily"]
STRATEGIES = ["none", "simple", "first", "average", "max"]


@pytest.fixture(scope="module")
def reference(model_dirs):
    pipelines = {}

    def predict(inputs, aggregation_strategy="none", **kwargs):
        if aggregation_strategy not in pipelines:
            pipelines[aggregation_strategy] = pipeline(
                "token-classification", model=str(model_dirs["ner"]), device="cpu",
                aggregation_strategy=aggregation_strategy,
            )
        return pipelines[aggregation_strategy](inputs, **kwargs)

    return predict


def _post(http, payload, status=200):
    response = http.post(f"/models/{MODEL}", json=payload)
    assert response.status_code == status, response.text
    return response.json()


def _assert_same(got: list[dict], want: list[dict]) -> None:
    assert isinstance(got, list) and len(got) == len(want), (got, want)
    for mine, theirs in zip(got, want, strict=True):
        assert {k: v for k, v in mine.items() if k != "score"} == {
            k: v for k, v in theirs.items() if k != "score"}
        assert abs(mine["score"] - float(theirs["score"])) < 1e-4


@pytest.mark.parametrize("parameters", [{}, {"aggregation_strategy": "simple"},
                                        {"aggregation_strategy": "first", "ignore_labels": []},
                                        {"aggregation_strategy": "max",
                                         "ignore_labels": ["O", "ORG"]}])
def test_list_equals_pipeline(http, reference, parameters):
    answer = _post(http, {"inputs": TEXTS, "parameters": parameters})
    assert isinstance(answer, list) and len(answer) == len(TEXTS)
    for text, entities in zip(TEXTS, answer, strict=True):
        _assert_same(entities, reference(text, **parameters))


@pytest.mark.parametrize("strategy", ["none", "average"])
def test_single_string_answers_one_list(http, reference, strategy):
    parameters = {"aggregation_strategy": strategy}
    answer = _post(http, {"inputs": TEXTS[0], "parameters": parameters})
    assert answer and all(isinstance(entity, dict) for entity in answer)
    _assert_same(answer, reference(TEXTS[0], **parameters))


def test_unknown_aggregation_strategy_is_422(http):
    body = _post(http, {"inputs": "paris", "parameters": {"aggregation_strategy": "longest"}},
                 status=422)
    assert set(body) >= {"error", "error_type"}
    assert "aggregation_strategy" in body["error"]


def test_concurrent_requests_get_their_own_answers(http, reference):
    jobs = [
        (TEXTS[i % len(TEXTS)] if i % 2 else TEXTS, STRATEGIES[i % len(STRATEGIES)])
        for i in range(16)
    ]

    def call(job):
        inputs, strategy = job
        return _post(http, {"inputs": inputs,
                            "parameters": {"aggregation_strategy": strategy}})

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(call, jobs))
    for (inputs, strategy), answer in zip(jobs, answers, strict=True):
        if isinstance(inputs, str):
            _assert_same(answer, reference(inputs, aggregation_strategy=strategy))
        else:
            assert len(answer) == len(inputs)
            for text, entities in zip(inputs, answer, strict=True):
                _assert_same(entities, reference(text, aggregation_strategy=strategy))


def test_health_probes_the_ner_model(http):
    assert http.get("/health").json()["models"][MODEL] == "ok"
