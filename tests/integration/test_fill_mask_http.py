"""fill-mask over HTTP against the session app, compared with ``transformers.pipeline``."""

from __future__ import annotations

import pytest
from transformers import pipeline

TEXTS = ["the movie was [MASK].", "[MASK] love [MASK] music", "café [MASK] 東京 🙂"]


@pytest.fixture(scope="module")
def reference(model_dirs):
    return pipeline("fill-mask", model=str(model_dirs["masked"]), device="cpu")


def _strip_scores(answer):
    if isinstance(answer, dict):
        return {k: v for k, v in answer.items() if k != "score"}
    return [_strip_scores(item) for item in answer]


def _scores(answer):
    if isinstance(answer, dict):
        return [answer["score"]]
    return [score for item in answer for score in _scores(item)]


@pytest.mark.parametrize("parameters", [{}, {"top_k": 2}, {"targets": ["good", "bad"]}])
def test_fill_mask_equals_pipeline(http, reference, parameters):
    response = http.post("/models/fill-mask", json={"inputs": TEXTS, "parameters": parameters})
    assert response.status_code == 200, response.text
    for text, answer in zip(TEXTS, response.json(), strict=True):
        expected = reference(text, **parameters)
        assert _strip_scores(answer) == _strip_scores(expected)
        assert max(abs(a - b) for a, b in zip(_scores(answer), _scores(expected),
                                              strict=True)) < 1e-4


def test_single_text_gives_one_list_of_predictions(http, reference):
    response = http.post("/models/fill-mask", json={"inputs": TEXTS[0]})
    assert _strip_scores(response.json()) == _strip_scores(reference(TEXTS[0]))


def test_input_without_mask_is_422(http):
    response = http.post("/models/fill-mask", json={"inputs": ["a [MASK]", "no mask"]})
    assert response.status_code == 422
    assert "inputs[1] has no mask token" in response.json()["error"]
