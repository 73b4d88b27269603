"""The systems the generation benchmark measures and how each is started:

- ``project-continuous`` / ``project-static``: this project as ``make serve`` runs it
  (``bench.project.Project``: a local Ray, Serve in HAProxy mode), the decoder on one
  model replica (2 torch threads), ``generation.scheduler`` continuous or static;
- ``transformers-serve``: ``transformers serve --continuous-batching`` (paged KV cache,
  SDPA on the CPU), its KV cache sized to hold every client's longest request.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.processes import wait_http
from bench.project import free_port

SYSTEMS = ("project-continuous", "project-static", "transformers-serve")
NAME = "gpt2"  # the model's name in the project's app
THREADS = 2  # torch threads of the one process that runs the model, in every system
PAGE_TOKENS = 256  # transformers' CB page size (its default)


@dataclass(frozen=True)
class Sizing:
    """What the servers are told about the load, so their caches and limits fit it."""

    max_clients: int  # concurrent requests at most
    max_request_tokens: int  # the longest prompt plus its max_tokens
    prefill_tokens: int = 2048  # prompt tokens per step, at most (both continuous batchers)
    rows: int = 64  # the project's max_batch_size: sequences decoding together


def project_args(model_dir: Path, scheduler: str, sizing: Sizing) -> dict:
    """The project's app ``args`` for ``project-<scheduler>``.

    One replica holds the model with 2 torch threads (both cores; ``num_cpus`` 1 leaves
    Ray room for the ingress). ``sizing.rows`` rows decode together, with a KV budget for
    all of them at their longest and ``sizing.prefill_tokens`` prompt tokens per step; the
    ingress lets a request wait 300 s (not 30) for its first token, so a queue at 64
    clients is measured, not answered with 504s.
    """
    generation: dict = {"scheduler": scheduler}
    if scheduler == "continuous":
        generation["max_batch_total_tokens"] = max(16384, sizing.rows * sizing.max_request_tokens)
        generation["max_batch_prefill_tokens"] = sizing.prefill_tokens
    return {
        "models": [{
            "name": NAME, "task": "text-generation", "model": str(model_dir),
            "num_cpus": 1, "num_threads": THREADS, "max_batch_size": sizing.rows,
            "max_ongoing_requests": 4 * max(16, sizing.max_clients),
            "generation": generation,
        }],
        "ingress": {"request_timeout_s": 300},
    }


def transformers_command(model_dir: Path, port: int, sizing: Sizing) -> list[str]:
    """``transformers serve --continuous-batching`` for ``model_dir`` on ``port``: a KV cache
    of pages enough for every client's longest request (on the CPU it otherwise takes 60%
    of the machine's memory), ``prefill_tokens`` tokens per step."""
    pages_per_request = -(-sizing.max_request_tokens // PAGE_TOKENS)
    return [
        _transformers_cli(), "serve", "--continuous-batching", "--host", "127.0.0.1",
        "--port", str(port), "--device", "cpu", "--dtype", "float32",
        "--cb-num-blocks", str(pages_per_request * sizing.max_clients + 1),
        "--cb-max-batch-tokens", str(sizing.prefill_tokens), "--log-level", "warning",
        str(model_dir),
    ]


def start_transformers(model_dir: Path, sizing: Sizing, log: Path) -> tuple[subprocess.Popen, str]:
    """Start ``transformers serve`` in its own process group; returns it and its URL once
    ``/health`` answers.

    Raises:
        RuntimeError: the command is missing, or the server exited or never answered.
    """
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(THREADS),
           "TOKENIZERS_PARALLELISM": "false"}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        process = subprocess.Popen(transformers_command(model_dir, port, sizing), env=env,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health", process, timeout_s=300)
    return process, url


def transformers_available() -> bool:
    """Whether ``transformers serve`` can run here (the CLI and its FastAPI extras)."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        return False
    return shutil.which("transformers") is not None


def _transformers_cli() -> str:
    path = shutil.which("transformers")
    if path is None:
        raise RuntimeError("the `transformers` command is not installed")
    return path
