"""Quantized embeddings (serving.quantization) against sentence-transformers'
``quantize_embeddings``, exactly; and their request fields (``precision``,
``embedding_type``) on the Inference API task and the OpenAI answer."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from sentence_transformers import SentenceTransformer
from sentence_transformers.util import quantize_embeddings

from serving.config import ModelSpec
from serving.errors import InvalidInputError
from serving.models import resolve_model_source
from serving.openai_compat import check_options, embeddings_response
from serving.quantization import PRECISIONS, quantize, quantize_matrices
from serving.runner import ModelRunner
from serving.schemas.openai import EmbeddingsRequest
from serving.tasks.feature_extraction import FeatureExtraction, FeatureExtractionParameters
from serving.tokenization import TextTokenizer

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TEXTS = ["I love this movie!", "terrible", "the film is not very good, but I like it a lot",
         "Ray Serve batches requests for me.", "A man is eating food.",
         "The capital of France is Paris.", "quantized vectors take less memory"]
QUANTIZED = [p for p in PRECISIONS if p != "float32"]


def _same(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize(("rows", "dim", "dtype"), [
    (2, 8, np.float32), (5, 13, np.float32), (64, 384, np.float32), (7, 30, np.float64),
])
def test_random_embeddings_quantize_exactly_as_sentence_transformers(precision, rows, dim,
                                                                     dtype):
    embeddings = np.random.default_rng(rows * dim).normal(size=(rows, dim)).astype(dtype)
    embeddings[:, 0] = 0.25  # a constant dimension (step 0 for every row)
    embeddings[0, 1] = 0.0  # exactly 0: not a set bit
    _same(quantize(embeddings, precision), quantize_embeddings(embeddings, precision))


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_given_ranges_are_used_as_sentence_transformers_uses_them(precision):
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(4, 16)).astype(np.float32)
    ranges = np.vstack((np.full(16, -1.0), np.full(16, 1.0)))  # values outside are clipped
    _same(quantize(embeddings, precision, ranges),
          quantize_embeddings(embeddings, precision, ranges=ranges))


@pytest.mark.parametrize("precision", QUANTIZED)
def test_token_matrices_share_ranges_as_sentence_transformers(precision):
    rng = np.random.default_rng(1)
    matrices = [rng.normal(size=(n, 12)).astype(np.float32) for n in (3, 1, 5)]
    ours, theirs = quantize_matrices(matrices, precision), quantize_embeddings(matrices, precision)
    for mine, reference in zip(ours, theirs, strict=True):
        _same(mine, reference)


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_one_embedding_has_no_range(precision):
    with pytest.raises(InvalidInputError, match="at least 2"):
        quantize(np.ones((1, 8), dtype=np.float32), precision)
    with pytest.raises(ValueError, match="single embedding"):  # sentence-transformers too
        quantize_embeddings(np.ones((1, 8), dtype=np.float32), precision)


def test_unknown_precision_is_refused():
    with pytest.raises(InvalidInputError, match="float16"):
        quantize(np.ones((2, 8), dtype=np.float32), "float16")


@pytest.fixture(scope="module")
def minilm():
    return SentenceTransformer(resolve_model_source(MINILM), device="cpu")


@pytest.mark.parametrize("precision", QUANTIZED)
def test_real_embeddings_match_encode_with_precision(minilm, precision):
    """The same float vectors give what encode(texts, precision=...) answers, exactly."""
    floats = minilm.encode(TEXTS, convert_to_numpy=True)
    _same(quantize(floats, precision), minilm.encode(TEXTS, precision=precision))


@pytest.fixture(scope="module")
def tiny_st(model_dirs):
    """The served code path of the tiny sentence-transformers model (PyTorch), and the
    model in sentence-transformers."""
    spec = ModelSpec(name="m", task="feature-extraction", model=str(model_dirs["st"]),
                     num_threads=torch.get_num_threads())
    runner = ModelRunner.load(spec.load_settings())
    tokenizer = TextTokenizer.load(str(model_dirs["st"]))
    return runner, tokenizer, SentenceTransformer(str(model_dirs["st"]), device="cpu")


@pytest.mark.parametrize("precision", PRECISIONS)
def test_served_precision_matches_encode_with_precision(tiny_st, precision):
    """The task's per-request quantization of the served vectors against
    ``encode(texts, precision=...)``: the float vectors agree to ~1e-7, which can move a
    value across a step's edge (most often a dimension's maximum: (max - min) / ((max -
    min) / 255) is 255 or 254.99998 in float32), so int8/uint8 may differ by 1 step in at
    most 5% of the values (binary: a sign flip of a value within 1e-5 of 0, none here)."""
    runner, tokenizer, reference = tiny_st
    task = runner.task
    params = FeatureExtractionParameters(precision=precision)
    inputs = FeatureExtraction.parse_inputs(TEXTS, 16, params)
    (outputs,) = runner.run([tokenizer.encode(inputs.texts)])
    ours = np.stack(task.postprocess_request(outputs, params, inputs.layout))
    theirs = reference.encode(TEXTS, precision=precision)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    if precision == "float32":
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)
        return
    difference = np.abs(ours.astype(np.int16) - theirs.astype(np.int16))
    if precision.endswith("binary"):
        np.testing.assert_array_equal(ours, theirs)
    else:
        assert difference.max() <= 1 and (difference == 0).mean() >= 0.95


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_precision_needs_two_inputs_before_any_batch(precision):
    params = FeatureExtractionParameters(precision=precision)
    for one in ("a single text", ["a single text"]):
        with pytest.raises(InvalidInputError, match=r"parameters\.precision.*at least 2"):
            FeatureExtraction.parse_inputs(one, 16, params)
    assert len(FeatureExtraction.parse_inputs(["a", "b"], 16, params).texts) == 2
    one = FeatureExtractionParameters(precision="binary")  # bits need no range
    assert FeatureExtraction.parse_inputs("a", 16, one).single


def test_similarity_refuses_a_precision():
    params = FeatureExtractionParameters(precision="binary")
    with pytest.raises(InvalidInputError, match=r"parameters\.precision"):
        FeatureExtraction.parse_inputs({"source_sentence": "a", "sentences": ["b"]}, 16, params)


def test_precision_values_are_sentence_transformers_names():
    assert FeatureExtractionParameters().precision == "float32"
    with pytest.raises(ValidationError, match="precision"):
        FeatureExtractionParameters.model_validate({"precision": "float"})
    with pytest.raises(ValidationError, match="precision"):
        FeatureExtractionParameters.model_validate({"precision": "int4"})


def _request(**fields) -> EmbeddingsRequest:
    return EmbeddingsRequest.model_validate({"model": "m", "input": TEXTS[:3], **fields})


def test_embedding_type_values():
    assert _request().embedding_type == "float"
    for value in ("float", "float32", "int8", "uint8", "binary", "ubinary"):
        assert _request(embedding_type=value).embedding_type == value
    for bad in ("int4", "base64", "INT8"):
        with pytest.raises(ValidationError, match="embedding_type"):
            _request(embedding_type=bad)


@pytest.mark.parametrize("embedding_type", ["int8", "uint8", "binary", "ubinary"])
def test_openai_answer_cuts_normalizes_then_quantizes(embedding_type):
    vectors = np.random.default_rng(2).normal(size=(3, 16)).astype(np.float32)
    answer = embeddings_response(list(vectors), 9,
                                 _request(embedding_type=embedding_type, dimensions=8))
    cut = vectors[:, :8] / np.linalg.norm(vectors[:, :8], axis=1, keepdims=True)
    expected = quantize_embeddings(cut, embedding_type)
    assert [item.embedding for item in answer.data] == expected.tolist()
    assert all(isinstance(value, int) for value in answer.data[0].embedding)
    # base64: float32 bytes of the same integers (what the openai client decodes).
    encoded = embeddings_response(list(vectors), 9, _request(
        embedding_type=embedding_type, dimensions=8, encoding_format="base64"))
    decoded = [np.frombuffer(base64.b64decode(item.embedding), dtype="<f4")
               for item in encoded.data]
    np.testing.assert_array_equal(np.stack(decoded), expected.astype(np.float32))


def test_openai_float_answer_is_unchanged():
    vectors = np.random.default_rng(3).normal(size=(2, 8)).astype(np.float32)
    for embedding_type in ("float", "float32"):
        answer = embeddings_response(list(vectors), 4, _request(embedding_type=embedding_type))
        np.testing.assert_array_equal(np.array([d.embedding for d in answer.data]), vectors)


def test_openai_options_are_checked_before_the_model_runs():
    spec = ModelSpec(name="m", task="feature-extraction", model=MINILM)
    matryoshka = ModelSpec(name="m", task="feature-extraction", model=MINILM,
                           matryoshka_dimensions=[64, 128, 384])
    check_options(_request(embedding_type="int8"), spec, 2)
    with pytest.raises(InvalidInputError, match=r"^embedding_type: int8 .* not 1"):
        check_options(_request(embedding_type="int8"), spec, 1)
    with pytest.raises(InvalidInputError, match=r"^dimensions: .*matryoshka_dimensions"):
        check_options(_request(dimensions=64), spec, 3)
    check_options(_request(dimensions=64, embedding_type="binary"), matryoshka, 1)
