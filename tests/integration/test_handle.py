"""Calling the app from Python through DeploymentHandles, and live reconfiguration."""

from __future__ import annotations

import time

import numpy as np
import pytest
from ray import serve
from ray.serve.context import _get_global_client
from ray.serve.schema import ServeDeploySchema

from serving.errors import InvalidInputError, ModelNotFoundError
from serving.schemas.inference_api import InferenceRequest
from serving.schemas.openai import ModelList


def test_handle_answers_like_http(handle, http):
    payload = {"inputs": ["a first text", "a second one"]}
    by_handle = handle.infer.remote("minilm", payload).result()
    by_http = http.post("/models/minilm", json=payload).json()
    assert np.allclose(by_handle, by_http, atol=1e-6)


def test_handle_accepts_typed_requests(handle):
    request = InferenceRequest(inputs="I love this movie!", parameters={"top_k": 1})
    result = handle.infer.remote("sentiment", request).result()
    assert len(result) == 1 and len(result[0]) == 1


def test_handle_lists_models(handle):
    models = handle.list_models.remote().result()
    assert isinstance(models, ModelList)
    assert "minilm" in {card.id for card in models.data}


def test_handle_raises_typed_errors(handle):
    with pytest.raises(ModelNotFoundError):
        handle.infer.remote("nope", {"inputs": "x"}).result()
    with pytest.raises(InvalidInputError, match="parameters.top_k"):
        handle.infer.remote("sentiment", {"inputs": "x", "parameters": {"top_k": -1}}).result()


def test_pipeline_deployments_compose_directly(served_app):
    tokenizer = serve.get_deployment_handle("tiny-st-tokenizer", app_name="test")
    model = serve.get_deployment_handle("tiny-st-model", app_name="test")
    from serving.tasks.feature_extraction import FeatureExtractionParameters

    encoded = tokenizer.encode.remote(["hello world"])
    vectors = model.infer.remote(encoded, FeatureExtractionParameters()).result()
    assert len(vectors) == 1 and abs(np.linalg.norm(vectors[0]) - 1) < 1e-5


def test_batch_settings_change_live_without_restarting_replicas(ray_session, model_dirs):
    """Batch settings overridden in the config's `deployments:` section (the in-place update
    path of `serve deploy`) reach the running replicas through `user_config`; they are not
    restarted. (Changing `args` changes Ray's code version, which rolls the replicas.)"""
    args = {"models": [{"name": "live", "task": "feature-extraction",
                        "model": str(model_dirs["st"]), "num_cpus": 0.1,
                        "tokenizer_num_cpus": 0.1, "max_batch_size": 8,
                        "batch_wait_timeout_s": 0.01}],
            "ingress": {"num_cpus": 0.05}}

    def deploy(max_batch_size: int, wait: float) -> dict:
        override = {"name": "live-model", "user_config": {
            "max_batch_size": max_batch_size, "batch_wait_timeout_s": wait}}
        config = ServeDeploySchema.model_validate({"applications": [
            {"name": "live", "route_prefix": "/live", "import_path": "graphs.app:build_app",
             "args": args, "deployments": [override]}]})
        _get_global_client().deploy_apps(config, _blocking=True)
        model = serve.get_deployment_handle("live-model", app_name="live")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            described = model.describe.remote().result()
            if described["max_batch_size"] == max_batch_size:
                return described
            time.sleep(0.5)
        raise AssertionError(f"batch settings never applied: {described}")

    try:
        before = deploy(8, 0.01)
        after = deploy(4, 0.002)
        assert (before["max_batch_size"], before["batch_wait_timeout_s"]) == (8, 0.01)
        assert (after["max_batch_size"], after["batch_wait_timeout_s"]) == (4, 0.002)
        assert after["replica_id"] == before["replica_id"]
        handle = serve.get_app_handle("live")
        assert len(handle.infer.remote("live", {"inputs": ["a"] * 10}).result()) == 10
    finally:
        serve.delete("live")


def test_app_client_merges_concurrent_calls_and_keeps_each_error_its_own(handle, http):
    """``AppClient`` sends one turn's calls for a model as one ``infer_many`` call; each
    caller gets the answer ``infer`` gives, and a bad request fails alone."""
    import asyncio

    from deployments.client import AppClient

    groups: list[int] = []

    class Recording(AppClient):
        async def _call(self, model, group):
            groups.append(len(group))
            await super()._call(model, group)

    texts = [f"text number {i} for the merged call" for i in range(20)]

    async def calls():
        client = Recording(handle, max_group=8)
        return await asyncio.gather(
            *(client.infer("minilm", {"inputs": text}) for text in texts),
            client.infer("sentiment", {"inputs": "x", "parameters": {"top_k": -1}}),
            client.infer("nope", {"inputs": "x"}), return_exceptions=True)

    async def pairs():  # requests of 2 texts each, at most 4 texts per call
        client = Recording(handle, max_texts=4)
        return await asyncio.gather(*(client.infer("minilm", {"inputs": texts[i:i + 2]})
                                      for i in range(0, 8, 2)))

    *vectors, invalid, missing = asyncio.run(calls())
    assert sorted(groups) == [1, 1, 4, 8, 8]  # minilm: 8 + 8 + 4; one each for the others
    groups.clear()
    answers = asyncio.run(pairs())
    assert groups == [2, 2]  # 4 texts each
    assert np.allclose([v for pair in answers for v in pair], vectors[:8], atol=1e-6)
    by_http = http.post("/models/minilm", json={"inputs": texts}).json()
    assert np.allclose(vectors, by_http, atol=1e-6)
    assert isinstance(invalid, InvalidInputError) and "top_k" in str(invalid)
    assert isinstance(missing, ModelNotFoundError)
