"""The HTTP API against the running session app: real Ray Serve, real HTTP, real models."""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer
from transformers import pipeline

SENTENCES = [
    "Ray Serve batches requests for me.",
    "A man is eating food.",
    "The capital of France is Paris, and it is a very big city with music in the streets.",
    "hello",
]


def _post(http, name, payload, status=200):
    response = http.post(f"/models/{name}", json=payload)
    assert response.status_code == status, response.text
    return response.json()


def _assert_error(response, status: int, error_type: str, mentions: str = "") -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "error_type"}
    assert body["error_type"] == error_type
    assert mentions in body["error"]


def test_minilm_embeddings_equal_sentence_transformers(http, minilm_dir):
    reference = SentenceTransformer(str(minilm_dir)).encode(SENTENCES)
    served = _post(http, "minilm", {"inputs": SENTENCES})
    assert np.allclose(np.array(served), reference, atol=1e-5)
    single = _post(http, "minilm", {"inputs": SENTENCES[0]})
    assert np.allclose(np.array(single), reference[0], atol=1e-5)


def test_embeddings_can_skip_normalization(http):
    raw = np.array(_post(http, "minilm", {"inputs": "hello", "parameters": {"normalize": False}}))
    unit = np.array(_post(http, "minilm", {"inputs": "hello"}))
    assert abs(np.linalg.norm(raw) - 1) > 1e-3
    assert np.allclose(raw / np.linalg.norm(raw), unit, atol=1e-5)


def test_token_embeddings_match_pipeline_without_sentence_transformers_config(http, model_dirs):
    reference = pipeline("feature-extraction", model=str(model_dirs["encoder"]))(SENTENCES[1])
    served = _post(http, "tiny-encoder", {"inputs": SENTENCES[1]})
    assert np.array(served).shape == np.array(reference).shape
    assert np.allclose(np.array(served), np.array(reference), atol=1e-5)


@pytest.mark.parametrize("parameters", [
    {}, {"top_k": 1}, {"top_k": 2}, {"function_to_apply": "sigmoid"}, {"function_to_apply": "none"},
])
@pytest.mark.parametrize("name,key", [("sentiment", "sst2"), ("emotions", "multilabel")])
def test_classification_equals_pipeline(http, model_dirs, name, key, parameters):
    classifier = pipeline("text-classification", model=str(model_dirs[key]))
    expected = classifier(SENTENCES, top_k=parameters.get("top_k"),
                          **{k: v for k, v in parameters.items() if k != "top_k"})
    served = _post(http, name, {"inputs": SENTENCES, "parameters": parameters})
    assert len(served) == len(expected)
    for got, want in zip(served, expected, strict=True):
        assert [entry["label"] for entry in got] == [entry["label"] for entry in want]
        assert np.allclose([e["score"] for e in got], [e["score"] for e in want], atol=1e-4)


def test_single_text_classification_is_a_list_of_lists(http):
    served = _post(http, "sentiment", {"inputs": "I love this movie!"})
    assert len(served) == 1 and {e["label"] for e in served[0]} == {"POSITIVE", "NEGATIVE"}


def test_text_pairs_equal_pipeline(http, model_dirs):
    pair = {"text": "A man is eating.", "text_pair": "Someone eats food."}
    expected = pipeline("text-classification", model=str(model_dirs["sst2"]))(pair, top_k=None)
    served = _post(http, "sentiment", {"inputs": pair})[0]
    assert [e["label"] for e in served] == [e["label"] for e in expected]
    assert np.allclose([e["score"] for e in served], [e["score"] for e in expected], atol=1e-4)


def test_concurrent_requests_are_batched_without_mixing_answers(http):
    texts = [f"{SENTENCES[i % len(SENTENCES)]} number {i}" for i in range(64)]
    sequential = np.array(_post(http, "minilm", {"inputs": texts}))
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda t: _post(http, "minilm", {"inputs": t}), texts))
    assert np.allclose(np.array(answers), sequential, atol=1e-5)


def test_list_models_in_openai_format(http):
    body = http.get("/v1/models").json()
    assert body["object"] == "list"
    cards = {card["id"]: card for card in body["data"]}
    assert cards["minilm"]["task"] == "feature-extraction"
    assert cards["sentiment"]["task"] == "text-classification"
    assert all(card["object"] == "model" for card in cards.values())


def test_health_reports_every_model(http):
    response = http.get("/health")
    assert response.status_code == 200
    assert set(response.json()["models"]) >= {"minilm", "sentiment", "emotions"}
    assert set(response.json()["models"].values()) == {"ok"}


def test_openapi_docs_have_examples(http):
    assert http.get("/docs").status_code == 200
    spec = http.get("/openapi.json").json()
    body = spec["paths"]["/models/{name}"]["post"]["requestBody"]["content"]["application/json"]
    assert "embedding" in body["examples"]


@pytest.mark.parametrize("payload,mentions", [
    ({"inputs": 5}, "inputs"),
    ({"inputs": [["nested"]]}, "inputs"),
    ({"inputs": {"text": 1}}, "inputs"),
    ({}, "inputs"),
    ({"inputs": ""}, "inputs is empty"),
    ({"inputs": "   "}, "inputs is empty"),
    ({"inputs": []}, "empty list"),
    ({"inputs": ["ok", ""]}, "inputs[1]"),
    ({"inputs": "x", "parameters": {"top_k": 0}}, "parameters.top_k"),
    ({"inputs": "x", "parameters": {"top_k": 10**9}}, "parameters.top_k"),
    ({"inputs": "x", "parameters": {"function_to_apply": "cube"}}, "function_to_apply"),
    ({"inputs": "x", "parameters": {"no_such": 1}}, "parameters.no_such"),
    ({"inputs": "x", "surprise": 1}, "surprise"),
])
def test_bad_input_is_a_clear_422(http, payload, mentions):
    _assert_error(http.post("/models/sentiment", json=payload), 422, "validation", mentions)


def test_malformed_json_is_a_clear_422(http):
    response = http.post("/models/minilm", content=b'{"inputs": ',
                         headers={"content-type": "application/json"})
    _assert_error(response, 422, "validation", "not valid JSON")


def test_too_many_inputs_is_422(http):
    _assert_error(http.post("/models/minilm", json={"inputs": ["a"] * 257}), 422, "validation",
                  "limit of 256")


def test_too_long_without_truncation_is_422_and_truncated_by_default(http):
    long_text = "hello world " * 200
    _post(http, "tiny-st", {"inputs": long_text})
    response = http.post("/models/tiny-st",
                         json={"inputs": long_text, "parameters": {"truncation": False}})
    _assert_error(response, 422, "input_too_long", "limit of 48")


def test_unknown_model_is_404(http):
    _assert_error(http.post("/models/nope", json={"inputs": "x"}), 404, "not_found", "nope")


def test_unknown_route_is_json_404(http):
    _assert_error(http.get("/no/such/route"), 404, "not_found")


def test_body_over_the_limit_is_413(http):
    response = http.post("/models/minilm", json={"inputs": "x" * (70 * 1024)})
    _assert_error(response, 413, "payload_too_large", "limit")


def test_chunked_body_over_the_limit_is_413(http):
    def chunks():
        yield b'{"inputs": "'
        for _ in range(80):
            yield b"x" * 1024
        yield b'"}'

    response = http.post("/models/minilm", content=chunks(),
                         headers={"content-type": "application/json"})
    _assert_error(response, 413, "payload_too_large")


def test_server_stays_healthy_after_bad_input(http):
    http.post("/models/minilm", content=b"\xff\xfe", headers={"content-type": "application/json"})
    assert http.get("/health").status_code == 200


def test_one_clients_bad_input_does_not_fail_the_requests_sharing_its_batch(http, model_dirs):
    long_text = "hello world " * 200
    good = {"inputs": SENTENCES, "parameters": {"top_k": 1}}
    expected = _post(http, "sentiment", good)
    bad = {"inputs": long_text, "parameters": {"truncation": False}}
    payloads = [good if i % 3 else bad for i in range(30)]
    with concurrent.futures.ThreadPoolExecutor(30) as pool:
        responses = list(pool.map(lambda p: http.post("/models/sentiment", json=p), payloads))
    for payload, response in zip(payloads, responses, strict=True):
        if payload is bad:
            _assert_error(response, 422, "input_too_long")
        else:
            assert response.status_code == 200
            assert [r[0]["label"] for r in response.json()] == [r[0]["label"] for r in expected]


def test_concurrent_requests_with_different_parameters_get_their_own(http):
    payloads = [{"inputs": SENTENCES[i % 4], "parameters": {"top_k": 1 + i % 2}}
                for i in range(24)]
    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(lambda p: _post(http, "sentiment", p), payloads))
    for payload, answer in zip(payloads, answers, strict=True):
        assert len(answer[0]) == payload["parameters"]["top_k"]


def test_sentence_similarity_equals_sentence_transformers(http, minilm_dir):
    model = SentenceTransformer(str(minilm_dir))
    source, others = SENTENCES[1], [SENTENCES[0], "A man eats something.", SENTENCES[2]]
    expected = model.similarity(model.encode([source]), model.encode(others))[0].numpy()
    payload = {"inputs": {"source_sentence": source, "sentences": others}}
    served = _post(http, "minilm", payload)
    assert np.allclose(served, expected, atol=1e-5)
    assert int(np.argmax(served)) == 1  # the paraphrase ranks first


def test_sentence_similarity_needs_a_pooled_model(http):
    payload = {"inputs": {"source_sentence": "a", "sentences": ["b"]}}
    _assert_error(http.post("/models/tiny-encoder", json=payload), 422, "wrong_model_kind",
                  "sentence embedding model")


@pytest.mark.parametrize("inputs,mentions", [
    ({"source_sentence": "a", "sentences": []}, "non-empty"),
    ({"source_sentence": "a", "sentences": ["b", " "]}, "inputs.sentences[1]"),
    ({"source_sentence": "", "sentences": ["b"]}, "inputs.source_sentence"),
    ({"source_sentence": "a"}, "inputs"),
])
def test_bad_similarity_inputs_are_422(http, inputs, mentions):
    _assert_error(http.post("/models/minilm", json={"inputs": inputs}), 422, "validation",
                  mentions)


def test_similarity_payload_is_refused_by_classifiers(http):
    payload = {"inputs": {"source_sentence": "a", "sentences": ["b"]}}
    _assert_error(http.post("/models/sentiment", json=payload), 422, "validation", "text_pair")
