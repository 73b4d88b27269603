"""Request ids: returned in X-Request-ID and carried by every deployment's log lines."""

from __future__ import annotations

import time
import uuid
from pathlib import Path


def _serve_logs() -> Path:
    import ray

    return Path(ray._private.worker.global_worker.node.get_logs_dir_path()) / "serve"


def _files_mentioning(text: str, timeout_s: float = 30,
                      wanted: tuple[str, ...] = ("tiny-st-model", "tiny-st-tokenizer")
                      ) -> set[str]:
    """Names of the session's Serve log files that mention ``text`` (logs are flushed
    asynchronously: wait until the lines of every ``wanted`` deployment are there)."""
    deadline, found = time.monotonic() + timeout_s, set()
    while time.monotonic() < deadline:
        found = {path.name for path in _serve_logs().glob("*.log") if text in path.read_text()}
        if all(any(deployment in name for name in found) for deployment in wanted):
            break
        time.sleep(1)
    return found


def test_client_request_id_is_echoed_and_logged_by_every_deployment(http):
    request_id = f"test-{uuid.uuid4().hex}"
    response = http.post("/models/tiny-st", json={"inputs": ["a", "b"]},
                         headers={"X-Request-ID": request_id})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == request_id
    deployments = ("Ingress", "tiny-st-tokenizer", "tiny-st-model")
    found = _files_mentioning(request_id, wanted=deployments)
    for deployment in deployments:
        assert any(deployment in name for name in found), (deployment, sorted(found))


def test_a_request_id_is_generated_when_the_client_sends_none(http):
    first = http.post("/models/tiny-st", json={"inputs": "a"}).headers["x-request-id"]
    second = http.post("/models/tiny-st", json={"inputs": "a"}).headers["x-request-id"]
    assert first and second and first != second
    assert any("tiny-st-model" in name for name in _files_mentioning(first))
