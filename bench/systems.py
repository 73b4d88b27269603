"""The systems a benchmark run measures: their names, how the two HTTP peers (the plain
baseline and Infinity) are started and spoken to, and the project's per-system settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import infinity
from bench.processes import wait_http
from bench.project import ROOT

SYSTEMS = ("limit", "baseline", "infinity", "project", "project-handle", "project-count")
PEERS = ("baseline", "infinity")  # servers of their own, one process group each


def project_body(inputs: Any) -> str:
    """The JSON body of this project's (and the baseline's) embed route."""
    return json.dumps({"inputs": inputs})


@dataclass
class Peer:
    """A started peer server: its process, the route that embeds and its body format."""

    process: subprocess.Popen
    path: str
    body: Callable[[Any], str]


def start_peer(system: str, model_dir: str, port: int, out: Path) -> Peer:
    """Start ``system`` (one of ``PEERS``) on ``port``; Infinity logs to ``out``/infinity.log.

    Raises:
        RuntimeError: the server exited or did not answer in time.
    """
    if system == "baseline":
        return Peer(start_baseline(model_dir, port), "/embed", project_body)
    out.mkdir(parents=True, exist_ok=True)
    process = infinity.start(model_dir, port, log_path=out / "infinity.log")
    return Peer(process, infinity.embed_path(),
                lambda inputs: json.dumps(infinity.request_body(inputs)))


def start_baseline(model_dir: str, port: int) -> subprocess.Popen:
    """``bench/baseline_app.py`` under uvicorn, in its own process group, once it answers."""
    env = {**os.environ, "BENCH_MODEL_DIR": model_dir, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.baseline_app:app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=env, start_new_session=True,
    )
    wait_http(f"http://127.0.0.1:{port}/health", process)
    return process


def project_settings(system: str, variants: dict[str, dict]) -> dict | None:
    """The model settings ``system`` (``project...``) is redeployed with; None: as it is."""
    if system == "project-count":
        return {"length_buckets": False}
    return variants.get(system.removeprefix("project-"))


def with_model_settings(args: dict, **settings) -> dict:
    """The app ``args`` with ``settings`` changed on its first model."""
    models = [dict(args["models"][0], **settings), *args["models"][1:]]
    return {**args, "models": models}
