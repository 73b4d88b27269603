"""The systems a benchmark run measures: their names, how the peers (servers of their own:
the plain baselines, Infinity, sentence-transformers' ONNX backend) are started and spoken
to, and the project's per-system settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import infinity, st_onnx
from bench.processes import wait_http
from bench.project import ROOT

SYSTEMS = (
    "limit",  # the bare model in every runtime (bench.runtimes): the true limit
    "baseline", "infinity", "infinity-onnx", "st-onnx",  # peers serving the embedder
    "project", "project-count",  # this project, started as `make serve` does
    "project-handle", "project-client",  # Python: a DeploymentHandle, deployments.client
    "project-in-ingress",  # the model in the ingress replicas (in_ingress: true)
    "project-proxy",  # this project started by plain `serve run` (Ray's Python proxy)
    "sentiment-baseline", "sentiment-infinity", "sentiment-project",  # the classifier
)
PEERS = ("baseline", "infinity", "infinity-onnx", "st-onnx", "sentiment-baseline",
         "sentiment-infinity")
EMBED_PEERS = PEERS[:4]
SENTIMENT = "sentiment"  # the classifier's name in the project's app


def project_body(inputs: Any) -> str:
    """The JSON body of this project's (and the baselines') route."""
    return json.dumps({"inputs": inputs})


@dataclass
class Peer:
    """A started peer server: its process, the route that answers and its body format."""

    process: subprocess.Popen
    path: str
    body: Callable[[Any], str]


def start_peer(system: str, model_dir: str, port: int, out: Path) -> Peer:
    """Start ``system`` (one of ``PEERS``) serving ``model_dir`` on ``port``; logs go to
    ``out``/<system>.log.

    Raises:
        RuntimeError: the server exited or did not answer in time.
    """
    out.mkdir(parents=True, exist_ok=True)
    log = out / f"{system}.log"
    if system == "baseline":
        return Peer(start_baseline(model_dir, port), "/embed", project_body)
    if system == "sentiment-baseline":
        return Peer(start_baseline(model_dir, port, "text-classification"), "/embed",
                    project_body)
    if system == "st-onnx":
        return Peer(st_onnx.start(model_dir, port, log), "/embed", project_body)
    engine = "optimum" if system == "infinity-onnx" else "torch"
    process = infinity.start(model_dir, port, log_path=log, engine=engine)
    if system == "sentiment-infinity":
        return Peer(process, infinity.CLASSIFY_ROUTE,
                    lambda inputs: json.dumps(infinity.classify_body(inputs)))
    return Peer(process, infinity.embed_path(),
                lambda inputs: json.dumps(infinity.request_body(inputs)))


def start_baseline(model_dir: str, port: int, task: str = "feature-extraction") -> subprocess.Popen:
    """``bench/baseline_app.py`` under uvicorn, in its own process group, once it answers."""
    env = {**os.environ, "BENCH_MODEL_DIR": model_dir, "BENCH_TASK": task, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.baseline_app:app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=env, start_new_session=True,
    )
    wait_http(f"http://127.0.0.1:{port}/health", process)
    return process


def project_args(system: str, args: dict, variants: dict[str, dict]) -> dict | None:
    """The app ``args`` system ``project...`` is redeployed with; None: ``args`` as they are."""
    if system == "project-count":
        return with_model_settings(args, length_buckets=False)
    if system == "project-in-ingress":  # the ingress replicas hold the model instead
        replicas = args["models"][0].get("num_replicas", 1)
        moved = with_model_settings(args, in_ingress=True, num_replicas=1)
        return {**moved, "ingress": {**args.get("ingress", {}), "num_replicas": replicas}}
    settings = variants.get(system.removeprefix("project-"))
    return None if settings is None else with_model_settings(args, **settings)


def with_model_settings(args: dict, **settings) -> dict:
    """The app ``args`` with ``settings`` changed on its first model."""
    models = [dict(args["models"][0], **settings), *args["models"][1:]]
    return {**args, "models": models}
