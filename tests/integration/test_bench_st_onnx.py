"""The "st-onnx" benchmark peer (``bench/st_onnx.py``): sentence-transformers' ONNX backend
behind FastAPI gives SentenceTransformer's torch embeddings for a string and for a list. Runs
the app from its own virtualenv, installed on first use (``ensure_installed()``: about two
minutes on a fresh venv, a stamp check afterwards)."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest
from conftest import free_port

from bench import st_onnx

TOLERANCE = 1e-4  # ONNX Runtime vs PyTorch: ~2e-7 seen
TEXTS = ["The quick brown fox jumps.", "a", "Micro-batches merge requests " * 40]  # ~200 tokens


def _post(url: str, inputs: str | list[str]) -> list:
    request = urllib.request.Request(url, data=json.dumps({"inputs": inputs}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def embed_url(minilm_dir, tmp_path_factory):
    """``POST /embed`` of the peer serving all-MiniLM-L6-v2 (two workers: both must answer)."""
    st_onnx.ensure_installed()
    port = free_port()
    log = tmp_path_factory.mktemp("st-onnx") / "server.log"
    process = st_onnx.start(str(minilm_dir), port, log, workers=2)
    yield f"http://127.0.0.1:{port}{st_onnx.EMBED_ROUTE}"
    st_onnx.stop(process)


def test_embeddings_equal_sentence_transformers(embed_url, minilm_dir):
    from sentence_transformers import SentenceTransformer

    expected = SentenceTransformer(str(minilm_dir), device="cpu").encode(TEXTS)
    got = _post(embed_url, TEXTS)
    assert len(got) == len(TEXTS) and all(len(vector) == 384 for vector in got)
    np.testing.assert_allclose(got, expected, atol=TOLERANCE)
    np.testing.assert_allclose(_post(embed_url, TEXTS[0]), expected[0], atol=TOLERANCE)
    assert _post(embed_url, []) == []
