"""zero-shot-classification over HTTP against the session app, compared with
``transformers.pipeline("zero-shot-classification")`` on the same tiny NLI model."""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest
from transformers import pipeline

MODEL = "zero-shot"
LABELS = ["politics", "sports", "music", "food"]
TEXTS = ["A man is eating food.", "the movie was great", "Paris is the capital of France",
         "Café crème 🍕 東京"]


@pytest.fixture(scope="module")
def reference(model_dirs):
    return pipeline("zero-shot-classification", model=str(model_dirs["nli"]))


def _post(http, payload, status=200):
    response = http.post(f"/models/{MODEL}", json=payload)
    assert response.status_code == status, response.text
    return response.json()


def _assert_same(got, want):
    if isinstance(want, dict):
        assert isinstance(got, dict)
        got, want = [got], [want]
    assert isinstance(got, list) and len(got) == len(want)
    for mine, theirs in zip(got, want, strict=True):
        assert set(mine) == {"sequence", "labels", "scores"}
        assert mine["sequence"] == theirs["sequence"]
        assert mine["labels"] == theirs["labels"]
        assert np.allclose(mine["scores"], theirs["scores"], atol=1e-4)


@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("inputs", [TEXTS[0], TEXTS])
def test_equals_pipeline(http, reference, inputs, multi_label):
    want = reference(inputs, candidate_labels=LABELS, multi_label=multi_label)
    got = _post(http, {"inputs": inputs,
                       "parameters": {"candidate_labels": LABELS, "multi_label": multi_label}})
    _assert_same(got, want)


def test_custom_template_and_comma_separated_labels(http, reference):
    template = "The topic is {}!"
    want = reference(TEXTS, candidate_labels="music, food,sports", hypothesis_template=template)
    got = _post(http, {"inputs": TEXTS, "parameters": {
        "candidate_labels": "music, food,sports", "hypothesis_template": template}})
    _assert_same(got, want)


def test_one_label(http, reference):
    want = reference(TEXTS[1], candidate_labels=["music"])
    _assert_same(_post(http, {"inputs": TEXTS[1], "parameters": {"candidate_labels": ["music"]}}),
                 want)


def test_long_premise_is_truncated(http, reference):
    long_text = "the movie was really great and i love it, ray serve batches it all. " * 30
    got = _post(http, {"inputs": long_text, "parameters": {"candidate_labels": LABELS}})
    _assert_same(got, reference(long_text, candidate_labels=LABELS))
    response = http.post(f"/models/{MODEL}", json={
        "inputs": long_text, "parameters": {"candidate_labels": LABELS, "truncation": False}})
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("parameters,mentions", [
    ({}, "candidate_labels"),
    ({"candidate_labels": []}, "candidate_labels"),
    ({"candidate_labels": ["a", " "]}, "candidate_labels"),
    ({"candidate_labels": ["a"], "hypothesis_template": "no slot here"}, "hypothesis_template"),
])
def test_bad_parameters_are_422(http, parameters, mentions):
    response = http.post(f"/models/{MODEL}", json={"inputs": "hello", "parameters": parameters})
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"error", "error_type"}
    assert body["error_type"] == "validation"
    assert mentions in body["error"]


def test_too_many_pairs_is_422(http):
    labels = [f"label {i}" for i in range(64)]
    response = http.post(f"/models/{MODEL}",
                         json={"inputs": ["hello"] * 5, "parameters": {"candidate_labels": labels}})
    assert response.status_code == 422, response.text
    assert "premise/hypothesis pairs" in response.json()["error"]


def test_concurrent_requests_get_their_own_labels(http, reference):
    label_sets = [LABELS[: 1 + i % 4] + [f"topic {i}"] for i in range(16)]

    def ask(i):
        texts = TEXTS[: 1 + i % 3]
        payload = {"inputs": texts, "parameters": {"candidate_labels": label_sets[i],
                                                   "multi_label": i % 2 == 1}}
        return i, texts, http.post(f"/models/{MODEL}", json=payload)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(16)))
    for i, texts, response in answers:
        assert response.status_code == 200, response.text
        want = reference(texts, candidate_labels=label_sets[i], multi_label=i % 2 == 1)
        _assert_same(response.json(), want)


def test_hypothesis_longer_than_the_window_is_422(http):
    response = http.post(f"/models/{MODEL}", json={"inputs": "short premise", "parameters": {
        "candidate_labels": ["a"], "hypothesis_template": "word " * 100 + "{}"}})
    assert response.status_code == 422, response.text
    assert response.json()["error_type"] == "input_too_long"
