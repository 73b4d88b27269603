"""``colocate_tokenizer: true``: the model replicas tokenize themselves (no tokenizer
deployment); ``in_ingress: true``: the ingress replica holds the model (no deployment of
its own). Answers and errors must equal those of the two-deployment pipeline."""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest

TEXTS = ["paris is the capital of france and berlin is a city.", "  Paris   is  big ",
         "café 東京 🙂 playing music happily", "x " * 400]


def _post(http, name, payload, status=200):
    response = http.post(f"/models/{name}", json=payload)
    assert response.status_code == status, response.text
    return response.json()


WAYS = ["colocated", "in-ingress"]


def test_no_tokenizer_deployment_is_deployed(served_app):
    from ray import serve

    deployments = serve.status().applications["test"].deployments
    assert "tiny-st-colocated-model" in deployments and "ner-colocated-model" in deployments
    assert "tiny-st-colocated-tokenizer" not in deployments
    assert "tiny-st-tokenizer" in deployments
    assert not [name for name in deployments if "in-ingress" in name]


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("parameters", [{}, {"normalize": False}])
def test_embeddings_equal_the_two_deployment_pipeline(http, parameters, way):
    mine = _post(http, f"tiny-st-{way}", {"inputs": TEXTS, "parameters": parameters})
    theirs = _post(http, "tiny-st", {"inputs": TEXTS, "parameters": parameters})
    np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6)


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("strategy", ["none", "simple", "max"])
def test_entities_and_offsets_equal_the_two_deployment_pipeline(http, strategy, way):
    payload = {"inputs": TEXTS, "parameters": {"aggregation_strategy": strategy}}
    mine, theirs = _post(http, f"ner-{way}", payload), _post(http, "ner", payload)
    for got, want in zip(mine, theirs, strict=True):
        assert [{k: v for k, v in e.items() if k != "score"} for e in got] == [
            {k: v for k, v in e.items() if k != "score"} for e in want]
        assert [e["score"] for e in got] == pytest.approx([e["score"] for e in want], abs=1e-5)


@pytest.mark.parametrize("way", WAYS)
def test_too_long_without_truncation_is_the_same_422(http, way):
    payload = {"inputs": TEXTS[-1], "parameters": {"truncation": False}}
    mine = _post(http, f"tiny-st-{way}", payload, status=422)
    theirs = _post(http, "tiny-st", payload, status=422)
    assert mine == theirs and mine["error_type"] == "input_too_long"


@pytest.mark.parametrize("way", WAYS)
def test_concurrent_requests_keep_their_own_answers(http, way):
    def one(text):
        return _post(http, f"tiny-st-{way}", {"inputs": [text]})[0]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, TEXTS * 4))
    alone = _post(http, f"tiny-st-{way}", {"inputs": TEXTS})
    for index, answer in enumerate(answers):
        np.testing.assert_allclose(answer, alone[index % len(TEXTS)], rtol=0, atol=1e-5)


def test_an_in_ingress_model_serves_every_route_and_reports_healthy(http):
    """TEI and OpenAI routes, token ids and /health reach a model held by the ingress."""
    vectors = _post(http, "tiny-st", {"inputs": TEXTS[:2]})
    openai = http.post("/v1/embeddings", json={"model": "tiny-st-in-ingress",
                                               "input": TEXTS[:2]}).json()
    np.testing.assert_allclose([d["embedding"] for d in openai["data"]], vectors, atol=1e-6)
    tokens = http.post("/models/tiny-st-in-ingress/tokenize", json={"inputs": "hello world"})
    assert tokens.status_code == 200 and tokens.json()[0][0]["text"]
    ids = http.post("/v1/embeddings", json={"model": "tiny-st-in-ingress",
                                            "input": [[2, 5, 7, 3]]})
    assert ids.status_code == 200, ids.text
    health = http.get("/health").json()
    assert health["models"]["tiny-st-in-ingress"] == "ok", health
