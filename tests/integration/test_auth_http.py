"""API key and CORS: a second app whose config names the key's environment variable."""

from __future__ import annotations

import httpx
import pytest
from conftest import SECURED_API_KEY

from deployments.middleware import read_api_key

ORIGIN = "http://playground.example"


@pytest.fixture(scope="module")
def secured(ray_session, model_dirs):
    """Base URL of an app that requires ``SECURED_API_KEY`` and allows CORS from ORIGIN."""
    from ray import serve

    from graphs.app import build_app

    config = {
        "models": [{"name": "tiny-st", "task": "feature-extraction",
                    "model": str(model_dirs["st"]), "num_cpus": 0.1,
                    "tokenizer_num_cpus": 0.1}],
        "ingress": {"num_cpus": 0.1, "api_key_env": "TEST_SECURED_API_KEY",
                    "cors_origins": [ORIGIN]},
    }
    serve.run(build_app(config), name="secured", route_prefix="/secured")
    yield f"http://127.0.0.1:{ray_session}/secured"
    serve.delete("secured")


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/models/tiny-st", {"inputs": "hello"}),
    ("POST", "/v1/embeddings", {"model": "tiny-st", "input": "hello"}),
    ("POST", "/embed", {"inputs": "hello"}),
    ("GET", "/v1/models", None),
    ("GET", "/info", None),
])
def test_every_api_route_needs_the_key(secured, method, path, body):
    for headers in ({}, _bearer("wrong-key"), {"Authorization": SECURED_API_KEY},
                    _bearer(SECURED_API_KEY + "x")):
        response = httpx.request(method, secured + path, json=body, headers=headers,
                                 timeout=60)
        assert response.status_code == 401, (headers, response.text)
        if path.startswith("/v1/"):  # OpenAI's error shape
            assert response.json()["error"]["code"] == "invalid_api_key"
        elif path in ("/embed", "/info"):  # TEI's: its nearest error type
            assert response.json()["error_type"] == "Validation"
        else:
            assert response.json()["error_type"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
    response = httpx.request(method, secured + path, json=body,
                             headers=_bearer(SECURED_API_KEY), timeout=60)
    assert response.status_code == 200, response.text


def test_health_and_the_playground_page_stay_public(secured):
    assert httpx.get(f"{secured}/health", timeout=60).status_code == 200
    assert httpx.get(f"{secured}/", timeout=60).status_code == 200
    assert httpx.get(f"{secured}/playground/app.js", timeout=60).status_code == 200


def test_cors_allows_only_the_configured_origin(secured, served_app):
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    allowed = httpx.options(f"{secured}/models/tiny-st", headers=preflight, timeout=60)
    assert allowed.status_code == 200  # answered before the key check
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    other = {**preflight, "Origin": "http://elsewhere.example"}
    refused = httpx.options(f"{secured}/models/tiny-st", headers=other, timeout=60)
    assert "access-control-allow-origin" not in refused.headers
    # The session app configures no origin: CORS is closed by default.
    closed = httpx.options(f"{served_app}/models/tiny-st", headers=preflight, timeout=60)
    assert "access-control-allow-origin" not in closed.headers


def test_key_from_a_secret_file(tmp_path):
    secret = tmp_path / "api_key"
    secret.write_text("from-a-file\n")
    assert read_api_key("KEY", "KEY_FILE", {"KEY_FILE": str(secret)}) == "from-a-file"
    assert read_api_key("KEY", "KEY_FILE", {"KEY": "direct", "KEY_FILE": str(secret)}) == "direct"
    assert read_api_key("KEY", "KEY_FILE", {}) is None
    with pytest.raises(ValueError, match="empty"):
        read_api_key("KEY", "KEY_FILE", {"KEY": " "})
