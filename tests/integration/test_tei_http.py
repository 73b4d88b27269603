"""Text Embeddings Inference routes (/embed, /similarity, /predict, /rerank, /tokenize,
/info): TEI's field names and answer shapes, and the same numbers as our own routes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from transformers import AutoTokenizer

TEXTS = ["Ray Serve batches requests.", "The cat sat on the mat."]


def _ok(http, path: str, body: dict | None = None):
    response = http.post(path, json=body) if body is not None else http.get(path)
    assert response.status_code == 200, response.text
    return response.json()


def _refused(http, path: str, body: dict, status: int = 422) -> str:
    response = http.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()
    assert set(error) >= {"error", "error_type"}
    return error["error"]


def test_embed_matches_the_inference_route(http):
    vectors = _ok(http, "/embed", {"inputs": TEXTS})
    ours = _ok(http, "/models/minilm", {"inputs": TEXTS, "parameters": {"normalize": True}})
    np.testing.assert_allclose(vectors, ours, atol=1e-6)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)  # TEI normalizes
    # One text is still a list of vectors; the named route answers for that model.
    (single,) = _ok(http, "/models/minilm/embed", {"inputs": TEXTS[0]})
    np.testing.assert_allclose(single, vectors[0], atol=1e-6)
    raw = _ok(http, "/embed", {"inputs": TEXTS, "normalize": False})
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1, atol=1e-3)
    short = _ok(http, "/embed", {"inputs": TEXTS, "dimensions": 8})
    assert np.asarray(short).shape == (2, 8)


def test_embed_of_another_model(http):
    vectors = _ok(http, "/models/tiny-st/embed", {"inputs": TEXTS})
    ours = _ok(http, "/models/tiny-st", {"inputs": TEXTS, "parameters": {"normalize": True}})
    np.testing.assert_allclose(vectors, ours, atol=1e-6)


def test_similarity_matches_the_inference_route(http):
    inputs = {"source_sentence": "A man is eating food.",
              "sentences": ["A man eats.", "The sky is blue."]}
    scores = _ok(http, "/similarity", {"inputs": inputs})
    np.testing.assert_allclose(scores, _ok(http, "/models/minilm", {"inputs": inputs}), atol=1e-6)
    assert scores[0] > scores[1]
    named = _ok(http, "/models/minilm/similarity",
                {"inputs": inputs, "parameters": {"truncate": True}})
    np.testing.assert_allclose(named, scores, atol=1e-6)


def test_predict_single_pair_and_batch(http):
    ours = _ok(http, "/models/sentiment", {"inputs": ["great film", "bad film"]})
    single = _ok(http, "/predict", {"inputs": "great film"})
    assert single == ours[0]  # the first text-classification model, every label, best first
    batch = _ok(http, "/predict", {"inputs": [["great film"], ["bad film"]]})
    assert batch == ours
    pair = _ok(http, "/models/sentiment/predict", {"inputs": ["a man eats", "someone eats"]})
    assert pair == _ok(http, "/models/sentiment",
                       {"inputs": {"text": "a man eats", "text_pair": "someone eats"}})[0]
    mixed = _ok(http, "/predict", {"inputs": [["great film"], ["a man eats", "someone eats"]]})
    assert mixed == [ours[0], pair]


def test_predict_raw_scores_are_logits(http):
    raw = _ok(http, "/predict", {"inputs": "great film", "raw_scores": True})
    probabilities = _ok(http, "/predict", {"inputs": "great film"})
    logits = np.array([entry["score"] for entry in raw])
    softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    by_label = {entry["label"]: entry["score"] for entry in probabilities}
    for entry, expected in zip(raw, softmax, strict=True):
        assert math.isclose(by_label[entry["label"]], expected, rel_tol=1e-5)


def test_rerank_with_an_embedding_view(http):
    body = {"query": "What is Deep Learning?",
            "texts": ["Deep learning is a kind of machine learning.", "Paris is in France."]}
    ranks = _ok(http, "/rerank", {**body, "return_text": True})  # the first ranking model
    assert ranks == _ok(http, "/models/minilm-rerank",
                        {"inputs": body, "parameters": {"return_text": True}})
    assert [r["index"] for r in ranks] == [0, 1]
    assert ranks[0]["text"] == body["texts"][0]


def test_rerank_with_a_cross_encoder(http):
    texts = ["the cat sat", "a dog ran", "the mat was red"]
    ranks = _ok(http, "/models/reranker/rerank", {"query": "cat", "texts": texts})
    pairs = [{"text": "cat", "text_pair": t} for t in texts]
    scores = [labels[0]["score"] for labels in _ok(http, "/models/reranker", {"inputs": pairs})]
    assert [r["index"] for r in ranks] == sorted(range(3), key=lambda i: -scores[i])
    assert [r["score"] for r in ranks] == sorted(scores, reverse=True)
    assert all("text" not in r for r in ranks)
    raw = _ok(http, "/models/reranker/rerank",
              {"query": "cat", "texts": texts, "raw_scores": True, "return_text": True})
    for entry in raw:  # logits: the sigmoid of each is the default score
        assert math.isclose(1 / (1 + math.exp(-entry["score"])), scores[entry["index"]],
                            rel_tol=1e-5)
        assert entry["text"] == texts[entry["index"]]


def test_tokenize_matches_the_hf_tokenizer(http, minilm_dir):
    text = "Héllo wörld, Ray Serve!"
    (tokens,) = _ok(http, "/tokenize", {"inputs": text})
    hf = AutoTokenizer.from_pretrained(str(minilm_dir))
    assert [t["id"] for t in tokens] == hf(text)["input_ids"]
    assert tokens[0] == {"id": hf.cls_token_id, "text": "[CLS]", "special": True,
                         "start": None, "stop": None}
    for token in tokens[1:-1]:
        assert not token["special"] and token["text"] == text[token["start"]:token["stop"]]
    bare = _ok(http, "/tokenize", {"inputs": [text, "ok"], "add_special_tokens": False})
    assert [[t["id"] for t in row] for row in bare] == hf([text, "ok"],
                                                          add_special_tokens=False)["input_ids"]


def test_tokenize_in_a_colocated_model(http):
    assert (_ok(http, "/models/tiny-st-colocated/tokenize", {"inputs": "hello world"})
            == _ok(http, "/models/tiny-st/tokenize", {"inputs": "hello world"}))


def test_info(http, app_config):
    info = _ok(http, "/info")
    assert info["name"] == "minilm" and info["task"] == "feature-extraction"
    assert info["model_type"] == {"embedding": {"pooling": "mean"}}
    assert info["max_input_length"] == 256  # MiniLM's sentence-transformers max_seq_length
    assert info["max_batch_tokens"] == 256 * info["max_batch_requests"]
    served = [m["name"] for m in app_config["models"]
              if "pool" not in m and "members" not in m]  # pools: per member
    assert set(served) <= set(info["models"])
    sentiment = info["models"]["sentiment"]
    assert set(sentiment["model_type"]["classifier"]["id2label"].values()) == {
        "NEGATIVE", "POSITIVE"}
    assert info["models"]["reranker"]["model_type"] == {
        "reranker": {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}}
    assert info["models"]["gpt2"]["max_input_length"] > 0
    assert _ok(http, "/models/sentiment/info") == sentiment


@pytest.mark.parametrize(("path", "body", "named"), [
    ("/models/sentiment/embed", {"inputs": "x"}, "text-classification"),
    ("/models/tiny-encoder/embed", {"inputs": "x"}, "token embeddings"),
    ("/models/minilm/predict", {"inputs": "x"}, "feature-extraction"),
    ("/models/sentiment/rerank", {"query": "q", "texts": ["a"]}, "2 labels"),
    ("/models/gpt2/tokenize", {"inputs": "x"}, "text-generation"),
    ("/predict", {"inputs": ["a", "b", "c"]}, "3 strings"),
    ("/embed", {"inputs": "x", "truncation_direction": "left"}, "truncation_direction"),
    ("/embed", {"inputs": "x", "prompt_name": "query"}, "prompt_name"),
    ("/embed", {"inputs": "word " * 400, "truncate": False}, "limit"),
    ("/embed", {"inputs": ["x", ""]}, "inputs[1]"),
    ("/tokenize", {"inputs": []}, "inputs"),
    ("/rerank", {"query": "q", "texts": []}, "texts"),
])
def test_clear_errors(http, path, body, named):
    assert named in _refused(http, path, body)


def test_unknown_model(http):
    assert "nope" in _refused(http, "/models/nope/embed", {"inputs": "x"}, status=404)
    response = http.get("/models/nope/info")
    assert response.status_code == 404 and "nope" in response.json()["error"]
