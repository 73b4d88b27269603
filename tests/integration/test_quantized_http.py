"""Quantized embeddings over HTTP (OpenAI's ``embedding_type``, the Inference API's
``parameters.precision``) against ``SentenceTransformer.encode(texts, precision=...)``,
and ``dimensions`` only on a model configured as Matryoshka-trained.

Two checks. Exact: the quantized answer equals ``quantize_embeddings`` of the float vectors
the server answers for the same request. With a tolerance: against ``encode(texts,
precision=...)``, whose float vectors differ from ours by ~1e-7 (PyTorch) or ~1e-5 (MiniLM
in ONNX Runtime). That can move a value across an int8 step's edge, and each dimension's
maximum sits on one: (max - min) / ((max - min) / 255) is 255 or 254.99998 (floored to
254) in float32 depending on the floats' last bits. So an int8/uint8 value may differ by 1
step, in at most 5% of the values (another request's ranges, or none, would move most
values by several steps); a bit (binary, ubinary) may flip only for a value that close to
0: at most 0.5% of the bits on MiniLM, none on the tiny PyTorch model.
"""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import openai
import pytest
from sentence_transformers import SentenceTransformer
from sentence_transformers.util import quantize_embeddings

TEXTS = ["Ray Serve batches requests.", "café 東京 🙂", "The cat sat on the mat.",
         "A man is eating food.", "quantized vectors take less memory",
         "The capital of France is Paris.", "A much longer sentence " * 40]
RANGED = ["int8", "uint8"]
BITS = ["binary", "ubinary"]


@pytest.fixture(scope="module")
def client(served_app):
    return openai.OpenAI(base_url=f"{served_app}/v1", api_key="sk-unused", max_retries=0)


@pytest.fixture(scope="module")
def references(model_dirs, minilm_dir):
    return {"tiny-st": SentenceTransformer(str(model_dirs["st"]), device="cpu"),
            "minilm": SentenceTransformer(str(minilm_dir), device="cpu")}


def assert_quantized_alike(ours, theirs: np.ndarray, precision: str, bit_flips: float = 0):
    ours = np.asarray(ours)
    assert ours.shape == theirs.shape
    assert np.array_equal(ours, np.round(ours))  # integers, even when sent as float32
    if precision in BITS:
        mine = np.unpackbits(ours.astype(theirs.dtype).view(np.uint8), axis=-1)
        reference = np.unpackbits(theirs.view(np.uint8), axis=-1)
        assert (mine != reference).mean() <= bit_flips
        return
    difference = np.abs(ours - theirs.astype(np.int64))
    assert difference.max() <= 1 and (difference == 0).mean() >= 0.95


def served_floats(http, model: str, texts: list[str], **fields) -> np.ndarray:
    """The float vectors /v1/embeddings answers for ``texts``."""
    body = http.post("/v1/embeddings", json={"model": model, "input": texts, **fields}).json()
    return np.array([item["embedding"] for item in body["data"]], dtype=np.float32)


@pytest.mark.parametrize("model", ["tiny-st", "minilm"])
@pytest.mark.parametrize("precision", RANGED + BITS)
def test_openai_embedding_type_matches_encode_with_precision(client, http, references, model,
                                                             precision):
    theirs = references[model].encode(TEXTS, precision=precision)
    # The client asks for base64 (float32 bytes) by default and decodes it.
    decoded = client.embeddings.create(model=model, input=TEXTS,
                                       extra_body={"embedding_type": precision})
    as_json = client.embeddings.create(model=model, input=TEXTS, encoding_format="float",
                                       extra_body={"embedding_type": precision})
    vectors = [item.embedding for item in as_json.data]
    raw = http.post("/v1/embeddings", json={"model": model, "input": TEXTS[:2],
                                            "embedding_type": precision}).json()
    assert all(isinstance(value, int) for value in raw["data"][0]["embedding"])  # JSON ints
    assert np.array_equal([item.embedding for item in decoded.data], vectors)
    exact = quantize_embeddings(served_floats(http, model, TEXTS), precision)
    np.testing.assert_array_equal(np.array(vectors), exact)
    assert_quantized_alike(vectors, theirs, precision,
                           bit_flips=0.005 if model == "minilm" else 0)


@pytest.mark.parametrize("precision", RANGED + BITS)
def test_dimensions_then_quantization_as_sentence_transformers(client, http, references,
                                                               precision):
    """truncate_dim → normalize → quantize, on the model configured as Matryoshka."""
    theirs = references["tiny-st"].encode(TEXTS, truncate_dim=8, normalize_embeddings=True,
                                          precision=precision)
    answer = client.embeddings.create(model="tiny-st-colocated", input=TEXTS, dimensions=8,
                                      encoding_format="float",
                                      extra_body={"embedding_type": precision})
    vectors = np.array([item.embedding for item in answer.data])
    exact = served_floats(http, "tiny-st-colocated", TEXTS, dimensions=8)
    np.testing.assert_array_equal(vectors, quantize_embeddings(exact, precision))
    assert_quantized_alike(vectors, theirs, precision)


@pytest.mark.parametrize("precision", ["float32", *RANGED, *BITS])
def test_inference_api_precision_matches_encode_with_precision(http, references, precision):
    response = http.post("/models/tiny-st", json={"inputs": TEXTS,
                                                  "parameters": {"precision": precision}})
    assert response.status_code == 200, response.text
    theirs = references["tiny-st"].encode(TEXTS, precision=precision)
    if precision == "float32":
        np.testing.assert_allclose(response.json(), theirs, rtol=0, atol=1e-5)
        return
    floats = np.array(http.post("/models/tiny-st", json={"inputs": TEXTS}).json(),
                      dtype=np.float32)
    np.testing.assert_array_equal(response.json(), quantize_embeddings(floats, precision))
    assert_quantized_alike(response.json(), theirs, precision)


def test_token_embeddings_share_the_request_ranges(http):
    """A model without pooling: every token of the request calibrates int8, as
    quantize_embeddings does with a list of matrices."""
    texts = TEXTS[:3]
    floats = http.post("/models/tiny-encoder", json={"inputs": texts}).json()
    answer = http.post("/models/tiny-encoder", json={"inputs": texts,
                                                     "parameters": {"precision": "int8"}})
    assert answer.status_code == 200, answer.text
    matrices = [np.asarray(rows[0], dtype=np.float32) for rows in floats]
    expected = quantize_embeddings(matrices, "int8")
    for ours, theirs in zip(answer.json(), expected, strict=True):
        np.testing.assert_array_equal(np.asarray(ours[0]), theirs)


def test_requests_merged_in_one_model_call_keep_their_own_ranges(http):
    """Ranges come from each request's texts, never from others coalesced with it."""
    texts = [f"{text} ({i})" for i in range(3) for text in TEXTS]
    groups = [texts[:6], texts[6:14], texts[14:]]

    def post(texts):
        return http.post("/models/tiny-st", json={
            "inputs": texts, "parameters": {"precision": "int8"}}).json()

    alone = [post(texts) for texts in groups]
    with ThreadPoolExecutor(len(groups) * 4) as pool:
        together = list(pool.map(post, groups * 4))
    # Padding with other texts moves a float by ~1e-7 (1 step at most, rarely); another
    # request's ranges would move most values by several steps.
    for ours, solo in zip(together, alone * 4, strict=True):
        assert_quantized_alike(ours, np.asarray(solo, dtype=np.int8), "int8")


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/models/tiny-st", {"inputs": "one text", "parameters": {"precision": "int8"}},
     "parameters.precision"),
    ("/models/tiny-st", {"inputs": ["one text"], "parameters": {"precision": "uint8"}},
     "parameters.precision"),
    ("/models/tiny-st", {"inputs": {"source_sentence": "a", "sentences": ["b"]},
                         "parameters": {"precision": "binary"}}, "parameters.precision"),
    ("/models/tiny-st", {"inputs": ["a", "b"], "parameters": {"precision": "int4"}},
     "precision"),
    ("/models/minilm", {"inputs": ["a", "b"], "parameters": {"dimensions": 64}},
     "parameters.dimensions"),
    ("/models/tiny-st-colocated", {"inputs": ["a", "b"], "parameters": {"dimensions": 4}},
     "parameters.dimensions"),
])
def test_inference_api_refusals_name_the_field(http, path, body, field):
    response = http.post(path, json=body)
    assert response.status_code == 422, response.text
    assert field in response.json()["error"]


def test_inference_api_dimensions_on_a_matryoshka_model(http, references):
    response = http.post("/models/tiny-st-colocated", json={
        "inputs": TEXTS, "parameters": {"dimensions": 8, "precision": "ubinary"}})
    assert response.status_code == 200, response.text
    theirs = references["tiny-st"].encode(TEXTS, truncate_dim=8, normalize_embeddings=True,
                                          precision="ubinary")
    assert_quantized_alike(response.json(), theirs, "ubinary")


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "tiny-st", "input": "one text", "embedding_type": "int8"}, "embedding_type"),
    ({"model": "tiny-st", "input": [[1012, 2003]], "embedding_type": "uint8"},
     "embedding_type"),
    ({"model": "tiny-st", "input": ["a", "b"], "embedding_type": "int4"}, "embedding_type"),
    ({"model": "minilm", "input": ["a", "b"], "dimensions": 64}, "dimensions"),
])
def test_openai_refusals_name_the_field(http, body, param):
    response = http.post("/v1/embeddings", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and param in error["message"]
    if param == "dimensions":
        assert "matryoshka_dimensions" in error["message"]


def test_one_text_binary_is_served(client, references):
    """Bits need no range: one text is enough (sentence-transformers agrees)."""
    (item,) = client.embeddings.create(model="tiny-st", input=TEXTS[0], encoding_format="base64",
                                       extra_body={"embedding_type": "binary"}).data
    vector = np.frombuffer(base64.b64decode(item.embedding), dtype="<f4")
    theirs = references["tiny-st"].encode([TEXTS[0]], precision="binary")[0]
    assert_quantized_alike(vector, theirs, "binary")
