"""Infinity as a benchmark peer (``bench/infinity.py``). Its ONNX engine (``optimum``) serves
all-MiniLM-L6-v2 from its local directory with SentenceTransformer's embeddings, and on both
engines a classifier gives ``transformers.pipeline``'s labels and scores. Infinity runs from
its own virtualenv, installed on first use (``ensure_installed()``: ~50 s into a new venv
with a warm pip cache), and each model is exported to ONNX once (~10 s)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port

from bench import infinity
from bench.workloads import texts

TOLERANCE = 1e-3  # ONNX Runtime vs PyTorch: ~2e-7 seen
TEXTS = [*texts("short", 6), "a", "Infinity batches " * 60]  # the last is ~180 tokens


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def installed() -> None:
    infinity.ensure_installed()


@pytest.fixture(scope="module")
def minilm_url(installed, minilm_dir, tmp_path_factory):
    """Base URL of Infinity's optimum engine serving all-MiniLM-L6-v2."""
    port = free_port()
    log = tmp_path_factory.mktemp("infinity") / "minilm.log"
    process = infinity.start(str(minilm_dir), port, engine="optimum", log_path=log)
    yield f"http://127.0.0.1:{port}"
    infinity.stop(process)


def test_optimum_embeddings_equal_sentence_transformers(minilm_url, minilm_dir):
    from sentence_transformers import SentenceTransformer

    answer = _post(minilm_url + infinity.embed_path(), infinity.request_body(TEXTS))
    got = np.array([item["embedding"] for item in answer["data"]])
    expected = SentenceTransformer(str(minilm_dir), device="cpu").encode(TEXTS)
    # Mean pooling (not Infinity's [CLS] default) and L2-normalised, like the model's pipeline.
    np.testing.assert_allclose(got, expected, atol=TOLERANCE)
    single = _post(minilm_url + infinity.embed_path(), infinity.request_body(TEXTS[0]))
    np.testing.assert_allclose(single["data"][0]["embedding"], expected[0], atol=TOLERANCE)


def test_the_model_directory_is_left_alone(minilm_url, minilm_dir):
    # The export and Infinity's optimised graph live under .bench/, not in site-packages.
    assert not list(Path(minilm_dir).rglob("*.onnx"))
    assert list(infinity.onnx_model_dir(minilm_dir).glob("model.onnx"))


@pytest.mark.parametrize("engine", infinity.ENGINES)
def test_classify_equals_the_pipeline(installed, model_dirs, tmp_path, engine):
    from transformers import pipeline

    model_dir = str(model_dirs["sst2"])
    port = free_port()
    process = infinity.start(model_dir, port, engine=engine, served_model_name="sst2",
                             log_path=tmp_path / "sst2.log")
    try:
        url = f"http://127.0.0.1:{port}{infinity.classify_path()}"
        batch = _post(url, infinity.classify_body(TEXTS[:4], model="sst2"))["data"]
        single = _post(url, infinity.classify_body(TEXTS[0], model="sst2"))["data"]
    finally:
        infinity.stop(process)
    expected = pipeline("text-classification", model=model_dir, top_k=None)(TEXTS[:4])
    for got, want in zip([*batch, *single], [*expected, expected[0]], strict=True):
        assert [entry["label"] for entry in got] == [entry["label"] for entry in want]
        np.testing.assert_allclose([entry["score"] for entry in got],
                                   [entry["score"] for entry in want], atol=TOLERANCE)
