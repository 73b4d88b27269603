"""Text Embeddings Inference clients, unchanged, against the session app.

``huggingface_hub.InferenceClient(base_url=<server>)`` posts to the server's root (``POST
/``, TEI's main route of the default model: ``minilm``) and checks ``{base}/health``;
llama-index's ``TextEmbeddingsInference`` posts ``{"inputs", "truncate"}`` to
``{base_url}/embed``. Each answer is compared with what our own route answers.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.inference._generated.types import TextClassificationOutputElement
from llama_index.embeddings.text_embeddings_inference import TextEmbeddingsInference

TEXTS = ["Ray Serve batches requests.", "A man is eating food.", "café 東京 🙂"]
PENDING_APP = "tei-pending"


# huggingface_hub's client may call our server although the Hub is off (conftest).
pytestmark = pytest.mark.usefixtures("hf_client_online")


def _ours(http, name: str, payload: dict):
    response = http.post(f"/models/{name}", json=payload)
    assert response.status_code == 200, response.text
    return response.json()


def test_feature_extraction_at_the_server_root(served_app, http):
    client = InferenceClient(base_url=served_app, timeout=60)
    vector = client.feature_extraction(TEXTS[0])
    assert vector.shape == (1, 384)
    np.testing.assert_allclose(vector[0], _ours(http, "minilm", {"inputs": TEXTS[0]}),
                               atol=1e-5)
    # Every option the client sends (a long text keeps its end with truncation left).
    long = " ".join(["padding words"] * 300 + [TEXTS[1]])
    raw = client.feature_extraction(long, normalize=False, truncate=True,
                                    truncation_direction="left")
    ours = _ours(http, "minilm", {"inputs": long, "parameters": {
        "normalize": False, "truncation_direction": "left"}})
    np.testing.assert_allclose(raw[0], ours, atol=1e-5)
    assert abs(np.linalg.norm(raw[0]) - 1) > 1e-3


def test_sentence_similarity_at_the_server_root(served_app, http):
    client = InferenceClient(base_url=served_app, timeout=60)
    scores = client.sentence_similarity(TEXTS[1], other_sentences=["A man eats.", TEXTS[0]])
    ours = _ours(http, "minilm", {"inputs": {"source_sentence": TEXTS[1],
                                             "sentences": ["A man eats.", TEXTS[0]]}})
    np.testing.assert_allclose(scores, ours, atol=1e-5)
    assert scores[0] > scores[1]


def test_text_classification_at_a_sagemaker_route(served_app, http):
    """A client whose base URL is one classifier's /invocations (SageMaker's route)."""
    client = InferenceClient(base_url=f"{served_app}/models/sentiment/invocations", timeout=60)
    labels = client.text_classification("great film", top_k=1)
    assert all(isinstance(label, TextClassificationOutputElement) for label in labels)
    (ours,) = _ours(http, "sentiment", {"inputs": "great film", "parameters": {"top_k": 1}})
    assert [(label.label, label.score) for label in labels] == [
        (entry["label"], pytest.approx(entry["score"], abs=1e-6)) for entry in ours]


def test_health_check_of_named_models(served_app):
    def healthy(name: str) -> bool:
        client = InferenceClient(base_url=f"{served_app}/models/{name}", provider="hf-inference")
        return client.health_check()

    assert healthy("minilm") and healthy("reranker") and healthy("customers/m00")
    assert not healthy("nope")


@pytest.fixture(scope="module")
def pending(ray_session, model_dirs):
    """An app with a model whose replica never starts (it asks for a resource no node has)."""
    from ray import serve

    from graphs.app import build_app
    from serving import capacity

    model = {"task": "feature-extraction", "model": str(model_dirs["st"]), "num_cpus": 0.1,
             "colocate_tokenizer": True}
    config = {"models": [{"name": "placed", **model},
                         {"name": "unplaceable", **model, "resources": {"no_such_node": 1}}],
              "ingress": {"num_cpus": 0.1}}
    with pytest.MonkeyPatch.context() as patch:  # past the capacity check, as on a cluster
        patch.setenv(capacity.SKIP_ENV, "1")     # that autoscales
        app = build_app(config)
    serve._run(app, name=PENDING_APP, route_prefix=f"/{PENDING_APP}", _blocking=False)
    url = f"http://127.0.0.1:{ray_session}/{PENDING_APP}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until the ingress and the placeable model answer
        try:
            if httpx.get(f"{url}/models/placed/health", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(1)
    else:
        raise AssertionError("the app's placeable model never became healthy")
    yield url
    serve.delete(PENDING_APP)


def test_health_check_of_a_model_without_replicas(pending):
    client = InferenceClient(provider="hf-inference")
    assert client.health_check(f"{pending}/models/placed")
    assert not client.health_check(f"{pending}/models/unplaceable")
    response = httpx.get(f"{pending}/models/unplaceable/health", timeout=10)
    assert response.status_code == 503
    report = response.json()
    assert report["status"] == "unhealthy" and "no running replica" in report["models"][
        "unplaceable"]


def test_llama_index_at_the_server_root(served_app, http):
    embed = TextEmbeddingsInference(model_name="minilm", base_url=served_app)
    ours = _ours(http, "minilm", {"inputs": TEXTS})
    np.testing.assert_allclose(embed.get_text_embedding(TEXTS[0]), ours[0], atol=1e-5)
    np.testing.assert_allclose(embed.get_query_embedding(TEXTS[1]), ours[1], atol=1e-5)
    np.testing.assert_allclose(embed.get_text_embedding_batch(TEXTS), ours, atol=1e-5)

    async def both() -> tuple:
        return await asyncio.gather(embed.aget_text_embedding(TEXTS[2]),
                                    embed.aget_text_embedding_batch(TEXTS))

    one, batch = asyncio.run(both())
    np.testing.assert_allclose(one, ours[2], atol=1e-5)
    np.testing.assert_allclose(batch, ours, atol=1e-5)


def test_llama_index_with_a_named_model(served_app, http):
    embed = TextEmbeddingsInference(model_name="tiny-st", base_url=f"{served_app}/models/tiny-st",
                                    embed_batch_size=2)
    ours = _ours(http, "tiny-st", {"inputs": TEXTS, "parameters": {"normalize": True}})
    np.testing.assert_allclose(embed.get_text_embedding_batch(TEXTS), ours, atol=1e-5)
    np.testing.assert_allclose(asyncio.run(embed.aget_query_embedding(TEXTS[0])), ours[0],
                               atol=1e-5)
