"""The sentiment benchmark's parts: the plain baseline's /classify and this project's
``POST /models/sentiment`` give the same answers to the same bodies, and both equal
``transformers.pipeline``. On a tiny DistilBERT built by ``bench.sentiment.ensure_model``
(the real size is ~255 MB), served by the session's Ray instance."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bench.processes import stop_group
from bench.project import default_args, free_port
from bench.sentiment import app_args, ensure_model
from bench.systems import start_baseline
from bench.workloads import texts

TINY_SIZES = {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64}
TINY_CPUS = 0.01  # logical CPUs: the session's Ray instance is mostly taken by the main app
TOLERANCE = 1e-4  # the project's ONNX engine differs from PyTorch by ~1e-6
APP = "bench-sentiment"
TEXTS = texts("short", 20)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    return ensure_model(tmp_path_factory.mktemp("sentiment") / "model", **TINY_SIZES)


@pytest.fixture(scope="module")
def baseline(model_dir):
    """Base URL of ``bench/baseline_app.py`` serving text-classification."""
    port = free_port()
    process = start_baseline(model_dir, port, "text-classification")
    yield f"http://127.0.0.1:{port}"
    stop_group(process)


@pytest.fixture(scope="module")
def project(ray_session, model_dir):
    """Base URL of the app ``app_args`` describes, its CPUs shrunk to fit the session."""
    from ray import serve

    from graphs.app import build_app

    args = app_args(model_dir, default_args())
    args["models"][0].update(num_cpus=TINY_CPUS, tokenizer_num_cpus=TINY_CPUS)
    args["ingress"] = {**args.get("ingress", {}), "num_cpus": TINY_CPUS}
    serve.run(build_app(args), name=APP, route_prefix=f"/{APP}")
    yield f"http://127.0.0.1:{ray_session}/{APP}"
    serve.delete(APP)


def _post(url: str, inputs) -> list:
    response = httpx.post(url, json={"inputs": inputs}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def _assert_same(got: list, want: list) -> None:
    """One list of every label per input, scores within TOLERANCE."""
    assert len(got) == len(want)
    for have, expected in zip(got, want, strict=True):
        scores = {x["label"]: x["score"] for x in have}
        assert scores == pytest.approx({x["label"]: x["score"] for x in expected},
                                       abs=TOLERANCE)
        # Best first; only a near-tie (random weights score near 0.5) may swap the order.
        if abs(expected[0]["score"] - expected[1]["score"]) > TOLERANCE:
            assert have[0]["label"] == expected[0]["label"]


def test_app_args_serve_the_model_with_the_default_serving_settings(model_dir):
    base = default_args()
    args = app_args(model_dir, base)
    (model,) = args["models"]
    assert (model["name"], model["task"], model["model"]) == (
        "sentiment", "text-classification", model_dir)
    assert "views" not in model
    for setting in ("engine", "max_batch_size", "batch_wait_timeout_s", "num_replicas",
                    "num_cpus"):
        assert model[setting] == base["models"][0][setting]
    assert base["models"][0]["name"] == "minilm"  # the base is not changed


def test_ensure_model_builds_once(model_dir):
    from transformers import AutoConfig

    weights = Path(model_dir) / "model.safetensors"
    built = weights.stat().st_mtime_ns
    assert ensure_model(Path(model_dir), **TINY_SIZES) == model_dir
    assert weights.stat().st_mtime_ns == built
    config = AutoConfig.from_pretrained(model_dir)
    assert config.id2label == {0: "NEGATIVE", 1: "POSITIVE"} and config.vocab_size == 30522


def test_baseline_answers_as_the_pipeline(baseline, model_dir):
    from transformers import pipeline

    classifier = pipeline("text-classification", model=model_dir, device="cpu")
    want = [classifier(text, truncation=True, top_k=None) for text in TEXTS[:5]]
    assert _post(f"{baseline}/classify", TEXTS[:5]) == want
    assert _post(f"{baseline}/classify", TEXTS[0]) == want[:1]
    assert _post(f"{baseline}/embed", TEXTS[0]) == want[:1]  # the harness's path to it


def test_project_and_baseline_give_the_same_answers(project, baseline):
    from ray import serve

    # The default config's engine: what is compared is ONNX Runtime against PyTorch.
    replica = serve.get_deployment_handle("sentiment-model", app_name=APP)
    assert replica.describe.remote().result()["engine"] == "onnx"
    got = [_post(f"{project}/models/sentiment", text) for text in TEXTS]
    want = [_post(f"{baseline}/classify", text) for text in TEXTS]
    for have, expected in zip(got, want, strict=True):
        _assert_same(have, expected)
    labels = {answer[0][0]["label"] for answer in want}
    assert labels == {"NEGATIVE", "POSITIVE"}  # the balanced head: both labels occur
    _assert_same(_post(f"{project}/models/sentiment", TEXTS), [a[0] for a in want])
