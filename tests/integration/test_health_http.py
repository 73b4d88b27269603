"""/health answers at once (well within Kubernetes' 1 s probe timeout) when a model has no
running replica, naming it, instead of waiting for a probe that cannot be served."""

from __future__ import annotations

import time

import httpx
import pytest

APP = "pending"


@pytest.fixture(scope="module")
def pending(ray_session, model_dirs):
    """An app whose model asks for a resource no node has: its replica stays pending."""
    from ray import serve

    from graphs.app import build_app
    from serving import capacity

    config = {
        "models": [
            {"name": "placed", "task": "feature-extraction", "model": str(model_dirs["st"]),
             "num_cpus": 0.1, "colocate_tokenizer": True},
            {"name": "unplaceable", "task": "feature-extraction",
             "model": str(model_dirs["st"]), "num_cpus": 0.1, "colocate_tokenizer": True,
             "resources": {"no_such_node": 1}},
        ],
        "ingress": {"num_cpus": 0.1},
    }
    # The capacity check refuses it at once; past the check (as on a cluster that
    # autoscales), serve.run would wait for a replica that never starts: do not wait.
    with pytest.raises(ValueError, match="unplaceable-model needs 0.1 CPU, 1 no_such_node"):
        build_app(config)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(capacity.SKIP_ENV, "1")
        app = build_app(config)
    serve._run(app, name=APP, route_prefix=f"/{APP}", _blocking=False)
    url = f"http://127.0.0.1:{ray_session}/{APP}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until the ingress and the placeable model answer
        try:
            report = httpx.get(f"{url}/health", timeout=5).json()
            if report.get("models", {}).get("placed") == "ok":
                break
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(1)
    else:
        raise AssertionError("the app's ingress never answered /health")
    yield url
    serve.delete(APP)


def test_health_names_a_model_without_replicas_at_once(pending):
    started = time.monotonic()
    response = httpx.get(f"{pending}/health", timeout=10)
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    report = response.json()
    assert report["status"] == "unhealthy"
    assert report["models"]["placed"] == "ok"
    reason = report["models"]["unplaceable"]
    assert reason.startswith("unavailable: deployment unplaceable-model has no running replica")
    assert elapsed < 1.0, f"/health took {elapsed:.2f} s"
