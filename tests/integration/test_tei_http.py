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


# TEI's error_type per status (router/src/lib.rs ErrorType, http/server.rs): a model of the
# wrong kind is 424 Backend; an unknown model (which TEI cannot have) is 404 Validation.
TEI_ERROR_TYPES = {422: "Validation", 424: "Backend", 404: "Validation", 400: "Empty",
                   405: "Validation"}


def _refused(http, path: str, body: dict, status: int = 422) -> str:
    """The message of TEI's error body ``{"error", "error_type"}`` answering ``body``."""
    response = http.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()
    assert error == {"error": error["error"], "error_type": TEI_ERROR_TYPES[status]}, error
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
    short = _ok(http, "/models/tiny-st-colocated/embed", {"inputs": TEXTS, "dimensions": 8})
    assert np.asarray(short).shape == (2, 8)
    assert np.allclose(np.linalg.norm(short, axis=1), 1, atol=1e-5)  # cut, then normalized
    # all-MiniLM-L6-v2 (the default /embed model) was not trained for Matryoshka.
    refused = _refused(http, "/embed", {"inputs": TEXTS, "dimensions": 8})
    assert "dimensions" in refused and "matryoshka_dimensions" in refused


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
    for token in tokens[1:-1]:  # UTF-8 byte offsets, as TEI's
        assert not token["special"]
        assert token["text"] == text.encode()[token["start"]:token["stop"]].decode()
    bare = _ok(http, "/tokenize", {"inputs": [text, "ok"], "add_special_tokens": False})
    assert [[t["id"] for t in row] for row in bare] == hf([text, "ok"],
                                                          add_special_tokens=False)["input_ids"]


def test_tokenize_in_a_colocated_model(http):
    assert (_ok(http, "/models/tiny-st-colocated/tokenize", {"inputs": "hello world"})
            == _ok(http, "/models/tiny-st/tokenize", {"inputs": "hello world"}))


def test_info(http, app_config):
    info = _ok(http, "/info")
    assert info["name"] == info["served_model_name"] == "minilm"
    assert info["task"] == "feature-extraction"
    assert info["model_type"] == {"embedding": {"pooling": "mean"}}
    assert info["model_dtype"] == "float32"  # what the replica runs (configured: auto)
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
    # An embedding model's cosine-ranking view is a reranker with one label, as TEI has it.
    assert info["models"]["minilm-rerank"]["model_type"] == {
        "reranker": {"id2label": {"0": "score"}, "label2id": {"score": 0}}}


@pytest.mark.parametrize(("path", "body", "named"), [
    ("/predict", {"inputs": ["a", "b", "c"]}, "3 strings"),
    ("/embed", {"inputs": "x", "truncation_direction": "up"}, "truncation_direction"),
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


# --- TEI's error shape, /info's schema, /tokenize's offsets ----------------------------------


@pytest.mark.parametrize(("path", "body", "named"), [
    ("/models/sentiment/embed", {"inputs": "x"}, "text-classification"),
    ("/models/tiny-encoder/embed", {"inputs": "x"}, "token embeddings"),
    ("/models/minilm/predict", {"inputs": "x"}, "feature-extraction"),
    ("/models/sentiment/rerank", {"query": "q", "texts": ["a"]}, "2 labels"),
    ("/models/gpt2/tokenize", {"inputs": "x"}, "text-generation"),
    ("/models/customers/m00/rerank", {"query": "q", "texts": ["a"]}, "labels"),
])
def test_a_model_of_the_wrong_kind_is_424_backend(http, path, body, named):
    """As TEI answers /predict on an embedding model ("Model is not a classifier model")."""
    assert named in _refused(http, path, body, status=424)


def test_tei_routes_answer_tei_s_error_shape(http):
    # FastAPI's own validation of the body, a body that is not JSON, a wrong method.
    assert "inputs" in _refused(http, "/embed", {"inputs": 3})
    assert "texts" in _refused(http, "/models/reranker/rerank", {"query": "q"})
    response = http.post("/tokenize", content=b'{"inputs": "x",}',
                         headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error_type"] == "Validation", response.text
    response = http.get("/embed")
    assert response.status_code == 405
    assert response.json() == {"error": "Method Not Allowed", "error_type": "Validation"}
    # The Inference API keeps its own error types; OpenAI's routes OpenAI's shape.
    ours = http.post("/models/minilm", json={"inputs": 3})
    assert ours.status_code == 422 and ours.json()["error_type"] == "validation"
    wrong = http.post("/models/minilm", json={"inputs": "x", "parameters": {"top_k": 1}})
    assert wrong.status_code == 422 and wrong.json()["error_type"] == "validation"


def test_info_has_every_field_of_tei_s_schema(http):
    """TEI's ``Info`` (router/src/lib.rs; its openapi.json): every field, TEI's types."""
    info = _ok(http, "/models/minilm/info")
    required = {"model_id": str, "model_dtype": str, "served_model_name": str,
                "model_type": dict, "max_concurrent_requests": int, "max_input_length": int,
                "max_batch_tokens": int, "max_client_batch_size": int, "auto_truncate": bool,
                "tokenization_workers": int, "version": str}
    for field, kind in required.items():
        assert isinstance(info[field], kind), (field, info)
    assert info.keys() >= {"model_sha", "max_batch_requests", "sha", "docker_label"}
    assert info["sha"] is None and info["docker_label"] is None
    assert info["served_model_name"] == "minilm"
    member = _ok(http, "/models/customers/m00/info")
    assert member["served_model_name"] == "customers/m00" and member["model_dtype"] == "float32"
    assert member["model_type"] == {"classifier": member["model_type"]["classifier"]}


def test_tokenize_offsets_are_utf8_bytes_or_characters(http, minilm_dir):
    """TEI's offsets count UTF-8 bytes (Rust tokenizers'); ``"offsets": "chars"`` counts
    characters. Each slices the input to the token's text."""
    text = "Café 日本 🙂 naïve"
    (in_bytes,) = _ok(http, "/tokenize", {"inputs": text})
    (in_chars,) = _ok(http, "/models/minilm/tokenize", {"inputs": [text], "offsets": "chars"})
    hf = AutoTokenizer.from_pretrained(str(minilm_dir))
    assert [t["id"] for t in in_bytes] == [t["id"] for t in in_chars] == hf(text)["input_ids"]
    utf8 = text.encode()
    words = [t for t in in_bytes if not t["special"]]
    assert [t["text"] for t in words] == [text[t["start"]:t["stop"]]
                                          for t in in_chars if not t["special"]]
    assert all(utf8[t["start"]:t["stop"]].decode() == t["text"] for t in words)
    spans = {t["text"]: (t["start"], t["stop"]) for t in words}
    assert spans["日"] == (6, 9) and spans["本"] == (9, 12) and spans["🙂"] == (13, 17)
    assert _refused(http, "/tokenize", {"inputs": text, "offsets": "tokens"}).startswith(
        "offsets")


# --- POST / and /invocations, /decode, token-id inputs, /embeddings, /ping, model health --


def test_root_and_invocations_answer_the_first_embedding_model(http):
    """TEI serves its model's main route on POST / and /invocations (SageMaker); here the
    first served model TEI would serve: minilm, an embedding model."""
    vectors = _ok(http, "/embed", {"inputs": TEXTS})
    for path in ("/", "/invocations", "/models/minilm/invocations"):
        np.testing.assert_allclose(_ok(http, path, {"inputs": TEXTS}), vectors, atol=1e-6)
    inputs = {"source_sentence": "A man is eating food.", "sentences": ["A man eats."]}
    scores = _ok(http, "/", {"inputs": inputs, "parameters": {"truncate": True}})
    np.testing.assert_allclose(scores, _ok(http, "/similarity", {"inputs": inputs}), atol=1e-6)
    # A body with parameters is the Inference API's, answered as POST /models/minilm.
    body = {"inputs": TEXTS[0], "parameters": {"normalize": False}}
    np.testing.assert_allclose(_ok(http, "/", body), _ok(http, "/models/minilm", body),
                               atol=1e-6)


def test_invocations_of_each_model_kind(http):
    assert (_ok(http, "/models/sentiment/invocations", {"inputs": "great film"})
            == _ok(http, "/models/sentiment/predict", {"inputs": "great film"}))
    rerank = {"query": "cat", "texts": ["the cat sat", "a dog ran"]}
    assert (_ok(http, "/models/reranker/invocations", rerank)
            == _ok(http, "/models/reranker/rerank", rerank))
    assert (_ok(http, "/models/minilm-rerank/invocations", rerank)
            == _ok(http, "/models/minilm-rerank/rerank", rerank))
    body = {"inputs": "great film", "parameters": {"top_k": 1}}
    assert (_ok(http, "/models/sentiment/invocations", body)
            == _ok(http, "/models/sentiment", body))


@pytest.mark.parametrize(("path", "body", "status", "named"), [
    ("/models/ner/invocations", {"inputs": "x"}, 424, "token-classification"),
    ("/models/nope/invocations", {"inputs": "x"}, 404, "nope"),
    ("/", {"inputs": 5}, 422, "inputs"),
    ("/", {"inputs": "x", "raw_scores": True}, 422, "raw_scores"),
    ("/invocations", ["x"], 422, "JSON object"),
])
def test_invocations_refusals(http, path, body, status, named):
    assert named in _refused(http, path, body, status)


def test_decode_as_the_tokenizer(http, minilm_dir):
    hf = AutoTokenizer.from_pretrained(str(minilm_dir))
    ids = hf(TEXTS)["input_ids"]
    assert _ok(http, "/decode", {"ids": ids}) == hf.batch_decode(ids, skip_special_tokens=True)
    assert _ok(http, "/models/minilm/decode", {"ids": ids[0], "skip_special_tokens": False}) == [
        hf.decode(ids[0])]
    # A colocated tokenizer and a pool member's decode their own ids back to the text.
    for name in ("tiny-st-colocated", "tiny-st-in-ingress", "customers/m00"):
        (tokens,) = _ok(http, f"/models/{name}/tokenize", {"inputs": "a man is eating food"})
        assert _ok(http, f"/models/{name}/decode", {"ids": [t["id"] for t in tokens]}) == [
            "a man is eating food"]


@pytest.mark.parametrize(("path", "body", "status", "named"), [
    ("/decode", {"ids": [[101], [101, 30522]]}, 422, "ids[1]: token id 30522"),
    ("/decode", {"ids": [-1]}, 422, "ids: token id -1"),
    ("/decode", {"ids": []}, 422, "ids is an empty list"),
    ("/decode", {"ids": [[7], []]}, 422, "ids[1] is an empty list"),
    ("/decode", {"ids": "hello"}, 422, "ids: must be a list of token ids"),
    ("/models/gpt2/decode", {"ids": [1]}, 424, "text-generation"),
])
def test_decode_refusals(http, path, body, status, named):
    assert named in _refused(http, path, body, status)


def test_embed_token_ids_as_given(http, minilm_dir):
    """TEI embeds token ids as given (no special tokens added): a text's ids, special
    tokens included, embed as the text; alone, in a batch, or mixed with texts."""
    hf = AutoTokenizer.from_pretrained(str(minilm_dir))
    ids = hf(TEXTS)["input_ids"]
    by_text = _ok(http, "/embed", {"inputs": TEXTS})
    np.testing.assert_allclose(_ok(http, "/embed", {"inputs": ids}), by_text, atol=1e-5)
    np.testing.assert_allclose(_ok(http, "/embed", {"inputs": ids[0]}), by_text[:1], atol=1e-5)
    mixed = _ok(http, "/embed", {"inputs": [ids[0], TEXTS[1]]})
    np.testing.assert_allclose(mixed, by_text, atol=1e-5)
    raw = _ok(http, "/models/minilm/embed", {"inputs": [TEXTS[0], ids[1]], "normalize": False})
    np.testing.assert_allclose(raw, _ok(http, "/embed", {"inputs": TEXTS, "normalize": False}),
                               atol=1e-5)
    # Without special tokens they are another input (OpenAI's /v1/embeddings frames them).
    bare = hf(TEXTS[0], add_special_tokens=False)["input_ids"]
    (unframed,) = _ok(http, "/embed", {"inputs": bare})
    assert not np.allclose(unframed, by_text[0], atol=1e-3)
    framed = _ok(http, "/v1/embeddings", {"model": "minilm", "input": [bare]})
    np.testing.assert_allclose(framed["data"][0]["embedding"], by_text[0], atol=1e-5)


def test_embed_token_ids_of_other_pipelines(http, model_dirs):
    text = "a man is eating food"
    for name in ("tiny-st-colocated", "tiny-st-in-ingress"):
        (tokens,) = _ok(http, f"/models/{name}/tokenize", {"inputs": text})
        by_ids = _ok(http, f"/models/{name}/embed", {"inputs": [[t["id"] for t in tokens]]})
        np.testing.assert_allclose(by_ids, _ok(http, f"/models/{name}/embed", {"inputs": text}),
                                   atol=1e-5)
    # A pool member: TEI's ids as given, and OpenAI's framed with the special tokens.
    ids = AutoTokenizer.from_pretrained(str(model_dirs["st"]))(text)["input_ids"]
    member = "embedders/tiny-bert-st"
    by_text = _ok(http, f"/models/{member}/embed", {"inputs": [text]})
    np.testing.assert_allclose(_ok(http, f"/models/{member}/embed", {"inputs": [ids]}), by_text,
                               atol=1e-5)
    framed = _ok(http, "/v1/embeddings", {"model": member, "input": [ids[1:-1]]})
    np.testing.assert_allclose([framed["data"][0]["embedding"]], by_text, atol=1e-5)
    # With a prompt (named or the model's default), TEI embeds the prompted text of the ids.
    ids = AutoTokenizer.from_pretrained(str(model_dirs["st-prompts"]))(text)["input_ids"]
    for prompt in ({}, {"prompt_name": "query"}):
        by_ids = _ok(http, "/models/tiny-st-prompts/embed", {"inputs": [ids], **prompt})
        by_text = _ok(http, "/models/tiny-st-prompts/embed", {"inputs": [text], **prompt})
        np.testing.assert_allclose(by_ids, by_text, atol=1e-5)
    query, document = (_ok(http, "/models/tiny-st-prompts/embed", {"inputs": ids, **prompt})
                       for prompt in ({"prompt_name": "query"}, {}))
    assert not np.allclose(query, document, atol=1e-3)


@pytest.mark.parametrize(("path", "body", "status", "named"), [
    ("/embed", {"inputs": [[101, 10**6]]}, 422, "inputs[0]: token id 1000000"),
    ("/embed", {"inputs": ["ok", [101, -3]]}, 422, "inputs[1]: token id -3"),
    ("/embed", {"inputs": ["ok", []]}, 422, "inputs[1] is an empty list of token ids"),
    ("/embed", {"inputs": [1012] * 300, "truncate": False}, 422, "inputs has 300 tokens"),
    ("/embed", {"inputs": [1.5]}, 422, "inputs: must be a string"),
    ("/models/tiny-encoder/embed", {"inputs": [2, 5, 3]}, 424, "token embeddings"),
])
def test_embed_token_id_refusals(http, path, body, status, named):
    assert named in _refused(http, path, body, status)


def test_embeddings_is_openai_s_route(http):
    body = {"model": "minilm", "input": TEXTS}
    ours, openai = _ok(http, "/embeddings", body), _ok(http, "/v1/embeddings", body)
    assert ours["usage"] == openai["usage"] and ours["model"] == "minilm"
    np.testing.assert_allclose([d["embedding"] for d in ours["data"]],
                               [d["embedding"] for d in openai["data"]], atol=1e-6)
    response = http.post("/embeddings", json={"model": "nope", "input": "x"})
    assert response.status_code == 404
    assert "nope" in response.json()["error"]["message"]  # OpenAI's error shape


def test_ping_and_one_model_s_health(http):
    ping, health = http.get("/ping"), http.get("/health")
    assert ping.status_code == health.status_code == 200
    assert ping.json()["models"].keys() == health.json()["models"].keys()
    for name in ("minilm", "minilm-rerank", "customers", "customers/m00"):
        response = http.get(f"/models/{name}/health")
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "ok", "models": {name: "ok"}}
    for name in ("nope", "customers/m99"):
        response = http.get(f"/models/{name}/health")
        assert response.status_code == 404 and name.split("/")[-1] in response.json()["error"]
