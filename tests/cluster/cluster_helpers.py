"""What the cluster tests share: the local cluster helper, the `serve` CLI with the
cluster's token, the Serve REST API, a handle driver and a bounded HTTP load."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from local_cluster import LocalCluster, NodeSpec, free_port, local_cluster, ray_cli  # noqa: E402

__all__ = ["LocalCluster", "NodeSpec", "free_port", "local_cluster", "ray_cli"]
APP = "default"


def serve_cli(cluster: LocalCluster, *args: str, timeout: float = 180,
              with_token: bool = True) -> subprocess.CompletedProcess:
    """Run ``serve ARGS --address <dashboard>`` as a client of ``cluster`` (token in the
    environment unless ``with_token`` is false; then no token anywhere, not even
    ~/.ray/auth_token)."""
    env = cluster.client_env()
    if not with_token:
        env.pop("RAY_AUTH_TOKEN")
        env["HOME"] = str(cluster.root)  # no ~/.ray/auth_token to fall back on
    return subprocess.run([ray_cli("serve"), *args, "--address", cluster.dashboard_url],
                          env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def serve_status(cluster: LocalCluster) -> dict:
    """``serve status`` of the cluster, parsed."""
    result = serve_cli(cluster, "status")
    assert result.returncode == 0, result.stderr[-2000:]
    return yaml.safe_load(result.stdout)


def wait_running(cluster: LocalCluster, timeout_s: float = 240) -> float:
    """Wait until ``serve status`` says the app is RUNNING; returns the seconds it took."""
    started = time.monotonic()
    status: dict = {}
    while time.monotonic() - started < timeout_s:
        status = serve_status(cluster)
        app = (status.get("applications") or {}).get(APP) or {}
        if app.get("status") == "RUNNING":
            return time.monotonic() - started
        if app.get("status") == "DEPLOY_FAILED":
            raise AssertionError(f"deploy failed: {json.dumps(app)[:3000]}")
        time.sleep(2)
    raise AssertionError(f"not RUNNING in {timeout_s}s: {json.dumps(status)[:3000]}\n"
                         f"{cluster.log_tail(1500)}")


def deploy(cluster: LocalCluster, config_path: Path) -> None:
    """``serve deploy CONFIG --address ...`` (returns once the cluster accepted it)."""
    result = serve_cli(cluster, "deploy", str(config_path))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def replicas(cluster: LocalCluster, deployment: str) -> list[dict]:
    """RUNNING replicas of ``deployment``, from the Serve REST API (what `serve status`
    reads): each with ``replica_id`` and ``node_id``."""
    details = cluster.api("/api/serve/applications/")
    deployments = (details.get("applications") or {}).get(APP, {}).get("deployments") or {}
    # While `serve deploy` rebuilds the app, its deployments are briefly not listed.
    found = deployments.get(deployment, {}).get("replicas", [])
    return [r for r in found if r["state"] == "RUNNING"]


def write_config(path: Path, args: dict, http_port: int,
                 overrides: list[dict] | None = None) -> Path:
    """A Serve config of serve_config.yaml's shape with these ``args``."""
    application = {"name": APP, "route_prefix": "/", "import_path": "graphs.app:build_app",
                   "args": args}
    if overrides:
        application["deployments"] = overrides
    path.write_text(yaml.safe_dump({
        "proxy_location": "EveryNode",  # a proxy per node; same port here (SO_REUSEPORT)
        "http_options": {"host": "127.0.0.1", "port": http_port},
        "applications": [application],
    }))
    return path


HANDLE_DRIVER = """
import json, sys
import ray
from ray import serve

ray.init(address=sys.argv[1], log_to_driver=False)
handle = serve.get_app_handle("default")
vectors = handle.infer.remote(sys.argv[2], {"inputs": ["a first text", "a second one"]}).result()
model = serve.get_deployment_handle(sys.argv[2] + "-model", app_name="default")
described = [model.describe.remote().result() for _ in range(int(sys.argv[3]))]
print(json.dumps({"vectors": len(vectors), "dim": len(vectors[0]),
                  "replicas": {d["replica_id"]: d["max_batch_size"] for d in described}}))
"""


def handle_call(cluster: LocalCluster, model: str, describes: int = 4) -> dict:
    """From a separate driver process (``ray.init(address=...)`` with the token), call the
    app through its ``DeploymentHandle`` and ``describe`` the model replicas."""
    result = subprocess.run(
        [sys.executable, "-c", HANDLE_DRIVER, cluster.gcs_address, model, str(describes)],
        env=cluster.client_env(), capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@dataclass
class Load:
    """Closed-loop HTTP load from ``clients`` threads against one model, until stopped or
    ``max_s`` passed (it always stops by itself); counts answers by outcome."""

    url: str
    payload: dict
    clients: int
    pause_s: float = 0.0  # between one client's requests: light load
    max_s: float = 120
    ok: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _client(self) -> None:
        deadline = time.monotonic() + self.max_s
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    response = client.post(self.url, json=self.payload)
                    good, error = response.status_code == 200, f"{response.status_code} " \
                        f"{response.text[:200]}"
                except httpx.HTTPError as exc:
                    good, error = False, repr(exc)
                with self._lock:
                    if good:
                        self.ok += 1
                    else:
                        self.failed += 1
                        self.errors.append(error)
                if self.pause_s:
                    self._stop.wait(self.pause_s)

    def __enter__(self) -> Load:
        self._threads = [threading.Thread(target=self._client, daemon=True)
                         for _ in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=70)
