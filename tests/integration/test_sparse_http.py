"""Sparse (SPLADE) and token embeddings over HTTP: TEI's /embed_sparse and /embed_all, the
Inference API route, and the refusals of requests a model of that kind cannot answer."""

from __future__ import annotations

import numpy as np
import pytest
from sentence_transformers import SparseEncoder
from transformers import pipeline

TEXTS = ["Ray Serve batches requests.", "The cat sat on the mat, and then it left.", "hi"]
SPARSE_ATOL = 1e-4
TOKEN_ATOL = 1e-5


def _ok(http, path: str, body: dict):
    response = http.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def _refused(http, path: str, body: dict, status: int) -> str:
    response = http.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()
    message = error["error"] if isinstance(error["error"], str) else error["error"]["message"]
    assert message
    return message


@pytest.fixture(scope="module")
def sparse_reference(model_dirs) -> np.ndarray:
    encoder = SparseEncoder(str(model_dirs["splade"]), device="cpu")
    return encoder.encode(TEXTS, convert_to_tensor=True).to_dense().numpy()


def _assert_sparse(answers: list, reference: np.ndarray) -> None:
    assert len(answers) == len(reference)
    for entries, expected in zip(answers, reference, strict=True):
        assert all(set(entry) == {"index", "value"} for entry in entries)
        indices = [entry["index"] for entry in entries]
        assert indices == sorted(indices) and len(set(indices)) == len(indices)
        dense = np.zeros_like(expected)
        dense[indices] = [entry["value"] for entry in entries]
        np.testing.assert_allclose(dense, expected, rtol=0, atol=SPARSE_ATOL)


def test_embed_sparse_matches_sparse_encoder(http, sparse_reference):
    assert (sparse_reference > 0).sum() > 10
    # The un-named route answers for the first SPLADE model (not the first embedding model).
    for path in ("/embed_sparse", "/models/tiny-splade/embed_sparse"):
        _assert_sparse(_ok(http, path, {"inputs": TEXTS}), sparse_reference)
    single = _ok(http, "/embed_sparse", {"inputs": TEXTS[0], "truncate": True})
    _assert_sparse(single, sparse_reference[:1])  # TEI: a list of one, even for one text


def test_the_inference_route_answers_sparse_vectors(http, sparse_reference):
    _assert_sparse(_ok(http, "/models/tiny-splade", {"inputs": TEXTS}), sparse_reference)
    one = _ok(http, "/models/tiny-splade", {"inputs": TEXTS[1]})
    _assert_sparse([one], sparse_reference[1:2])  # one text: one list of entries
    # TEI's /embed with normalize false: the dense vocabulary-sized vector.
    dense = _ok(http, "/models/tiny-splade/embed", {"inputs": TEXTS, "normalize": False})
    np.testing.assert_allclose(dense, sparse_reference, rtol=0, atol=SPARSE_ATOL)


def test_info_reports_splade_pooling(http):
    response = http.get("/models/tiny-splade/info")
    assert response.status_code == 200, response.text
    assert response.json()["model_type"] == {"embedding": {"pooling": "splade"}}


@pytest.mark.parametrize("name", ["tiny-st", "minilm", "tiny-encoder"])
def test_embed_all_matches_the_pipeline(http, model_dirs, minilm_dir, name):
    """Every token's vector (special tokens included), as transformers.pipeline gives
    them, also for a sentence embedding model (TEI returns raw token embeddings)."""
    model = {"tiny-st": model_dirs["st"], "minilm": minilm_dir,
             "tiny-encoder": model_dirs["encoder"]}[name]
    reference = pipeline("feature-extraction", model=str(model), device="cpu")
    rows = _ok(http, f"/models/{name}/embed_all", {"inputs": TEXTS})
    assert len(rows) == len(TEXTS)
    for tokens, text in zip(rows, TEXTS, strict=True):
        expected = np.asarray(reference(text))[0]
        np.testing.assert_allclose(tokens, expected, rtol=0, atol=TOKEN_ATOL)
    if name == "tiny-st":  # the Inference API's parameter: the pipeline's [1, tokens, dim]
        answers = _ok(http, "/models/tiny-st", {"inputs": TEXTS,
                                                "parameters": {"token_embeddings": True}})
        for answer, tokens in zip(answers, rows, strict=True):
            np.testing.assert_allclose(answer[0], tokens, rtol=0, atol=TOKEN_ATOL)


def test_embed_all_and_vectors_at_once(http):
    """Concurrent pooled and token-embedding requests for one model keep their kinds."""
    import concurrent.futures

    bodies = [("/models/tiny-st/embed", {"inputs": TEXTS}),
              ("/models/tiny-st/embed_all", {"inputs": TEXTS})] * 4
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda item: _ok(http, *item), bodies))
    for (path, _), answer in zip(bodies, answers, strict=True):
        depth = np.ndim(answer[0]) if path.endswith("/embed") else np.ndim(answer[0][0])
        assert depth == 1


def test_default_embed_all_is_the_first_dense_model(http):
    (tokens,) = _ok(http, "/embed_all", {"inputs": TEXTS[2]})
    assert np.asarray(tokens).shape[1] == 384  # minilm, the first embedding model


@pytest.mark.parametrize(("path", "body", "status", "says"), [
    ("/models/tiny-st/embed_sparse", {"inputs": "hi"}, 424, "SPLADE pooling"),
    ("/models/sentiment/embed_sparse", {"inputs": "hi"}, 424, "text-classification"),
    ("/models/tiny-splade/embed_all", {"inputs": "hi"}, 424, "not available for SPLADE"),
    ("/models/tiny-splade/embed", {"inputs": "hi"}, 424, "normalize is not available"),
    ("/models/tiny-splade", {"inputs": "hi", "parameters": {"token_embeddings": True}}, 422,
     "token embeddings"),
    ("/models/tiny-splade", {"inputs": "hi", "parameters": {"normalize": True}}, 422,
     "normalize"),
    ("/v1/embeddings", {"model": "tiny-splade", "input": "hi"}, 400, "sparse"),
])
def test_wrong_kind_requests_are_refused(http, path, body, status, says):
    assert says in _refused(http, path, body, status)


def test_a_sparse_model_still_answers_after_refusals(http, sparse_reference):
    _refused(http, "/models/tiny-splade/embed", {"inputs": TEXTS}, 424)
    _assert_sparse(_ok(http, "/models/tiny-splade/embed_sparse", {"inputs": TEXTS}),
                   sparse_reference)
