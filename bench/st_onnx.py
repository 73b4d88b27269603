"""sentence-transformers' ONNX backend behind FastAPI (``bench/st_onnx_app.py``) as a peer.

What a well-informed user writes without this project: ``pip install
"sentence-transformers[onnx]" fastapi "uvicorn[standard]"``, ``SentenceTransformer(dir,
backend="onnx")`` and a small asyncio micro-batcher. That extra needs ``optimum-onnx``, whose
only release (0.1.0) pins ``transformers<4.58``, while this project runs transformers 5 and
sentence-transformers 6 (which needs transformers>=5). So pip resolves it to
sentence-transformers 5.7.0 + transformers 4.57.6, which cannot share this project's
environment: the peer lives in its own virtualenv (``VENV``, under the git-ignored ``.bench/``)
and runs as a separate process, like ``bench.infinity``. This module imports only the standard
library (and ``bench.processes``, which does too).

    ensure_installed()                            # once; later calls only check a stamp
    proc = start(model_dir, port=8003, log_path=out / "st-onnx.log")  # blocks until /health
    try:
        ...  # POST /embed with {"inputs": str | [str, ...]} (the baseline's contract)
    finally:
        stop(proc)

Answers: one vector (a list of 384 floats) for a string, a list of vectors for a list; equal
(within 1e-4) to ``SentenceTransformer(dir).encode(texts)`` with torch, normalised by
all-MiniLM-L6-v2's own Normalize module.

Defaults (``start()``): 2 uvicorn worker processes of 1 ONNX Runtime thread each, no batch
wait. The full benchmark run of 2026-11-30 10:03 UTC (docs/performance.md) still ran 1 worker
of 1 thread; 2 workers were chosen after it, for throughput at 64 clients. Measured 2026-11-30
on the 2-core machine (single-short, ``bench.loadgen.closed_loop`` with wrk, 10 s after 3 s of
warm-up; runs where other work used over 5% of the cores dropped; medians, ranges in brackets;
the rows with 0 ms are runs with the app's ``gc.freeze()``, 5 of the default and 4 of 1 x 2)::

    workers x threads, wait  64 clients: req/s  p50 ms  p99 ms   1 client: req/s  p50 ms
    2 x 1, 0 ms (default)     996 (951-1057)    67-80   86-133   189 (129-226)    4.3-7.9
    1 x 2, 0 ms               858 (740-930)     68-86   84-104   267 (220-301)    3.0-4.3
    1 x 1, 0 ms               518               121     170      159              6.5
    2 x 1, 2 ms               965 (965-966)     58      211-326  111 (110-112)    8.8-9.0
    1 x 2, 2 ms               806 (757-855)     65-77   324-332  167 (147-187)    4.9-6.8

Two single-threaded workers win wherever requests overlap: in one process the event loop and
``encode()``'s Python share a GIL, so 2 ORT threads cannot keep both cores on the model. A lone
client is served fastest by ``workers=1, threads=2`` (~300 req/s, p50 3.0 ms on a quiet
machine, ORT's second thread spin-waiting on the other core). Waiting for more requests only
adds latency: at 64 clients the queue fills while the previous batch runs anyway. (The 2 ms
rows predate the app's ``gc.freeze()``, which took p99 at 64 clients from 250-400 ms to under
100 ms; their p99s are not comparable.)
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.request
from pathlib import Path

from bench.processes import install_venv, log_tail, stop_group, venv_env, wait_http

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".bench" / "st-onnx-venv"
APP = "bench.st_onnx_app:app"

# What ``pip install torch==2.13.0 "sentence-transformers[onnx]" fastapi uvicorn`` resolved to
# on CPython 3.11, pinned. ``torch==2.13.0`` selects the local CPU wheel (a looser spec pulls a
# CUDA build); uvloop and httptools are ``uvicorn[standard]``'s fast loop and HTTP parser, the
# same ones the baseline gets from the main environment.
PINS: tuple[str, ...] = (
    "torch==2.13.0",
    "sentence-transformers[onnx]==5.7.0",
    "optimum-onnx[onnxruntime]==0.1.0",
    "optimum==2.1.0",
    "transformers==4.57.6",
    "tokenizers==0.22.2",
    "huggingface_hub==0.36.2",
    "onnx==1.23.2",
    "onnxruntime==1.32.0",
    "numpy==2.4.6",
    "fastapi==0.165.0",
    "starlette==1.10.0",
    "pydantic==2.14.4",
    "uvicorn==0.54.0",
    "uvloop==0.23.0",
    "httptools==0.9.0",
)
STAMP = ".bench-st-onnx-installed"
CHECK = ("import fastapi, uvicorn, onnxruntime, sentence_transformers; "
         "from optimum.onnxruntime import ORTModelForFeatureExtraction")

EMBED_ROUTE = "/embed"    # POST {"inputs": str | [str, ...]}
HEALTH_ROUTE = "/health"  # GET; answers once the model is loaded (uvicorn runs lifespan first)
DEFAULT_THREADS = 1       # ORT intra-op threads (and torch's, for pooling) per process
DEFAULT_WORKERS = 2       # uvicorn worker processes
DEFAULT_WAIT_MS = 0.0     # how long the micro-batcher waits for more requests after the first


def python(venv: Path = VENV) -> Path:
    return Path(venv) / "bin" / "python"


def ensure_installed(venv: Path = VENV) -> Path:
    """Create ``venv`` and install ``PINS`` into it unless its stamp says so already.

    Returns the venv's python. Raises RuntimeError if any step fails (with the log's tail).
    """
    return install_venv("st-onnx", Path(venv), PINS, CHECK, STAMP)


def environment(model_dir: str, threads: int, wait_ms: float) -> dict[str, str]:
    env = venv_env()
    env.update({
        "BENCH_MODEL_DIR": str(model_dir), "BENCH_THREADS": str(threads),
        "BENCH_WAIT_MS": str(wait_ms),
        # torch (pooling) and any OpenMP pool get the same share as ORT's intra-op pool.
        "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def start(model_dir: str, port: int, log_path: Path, threads: int = DEFAULT_THREADS,
          workers: int = DEFAULT_WORKERS, wait_ms: float = DEFAULT_WAIT_MS,
          timeout_s: float = 300, venv: Path = VENV) -> subprocess.Popen:
    """Start the app under uvicorn in its own process group; return once ``/health`` answers.

    Args:
        model_dir: a local sentence-transformers directory (exported to ONNX at start-up).
        port: the port on 127.0.0.1.
        log_path: where uvicorn's output goes.
        threads: ORT intra-op (and torch) threads per worker process.
        workers: uvicorn worker processes, each with its own model and micro-batcher.
        wait_ms: how long the micro-batcher waits for more requests after the first.
        timeout_s: how long start-up (the ONNX export included) may take.
        venv: the virtualenv ``ensure_installed()`` made.

    Raises:
        RuntimeError: the venv is missing, or the server exited or did not answer in time
            (it is stopped first in the latter case).
    """
    exe = python(venv)
    if not exe.exists():
        raise RuntimeError(f"{exe} not found; call bench.st_onnx.ensure_installed() first")
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # uvicorn's supervisor kills a worker that misses a 5 s healthcheck; a worker exporting
    # its model on a loaded machine can, and then it is killed and restarted over and over.
    command = [str(exe), "-m", "uvicorn", APP, "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(workers), "--timeout-worker-healthcheck", "120",
               "--log-level", "warning"]
    with open(log_path, "w") as out:
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True,
                                   env=environment(model_dir, threads, wait_ms))
    url = f"http://127.0.0.1:{port}{HEALTH_ROUTE}"
    try:
        started = time.monotonic()
        wait_http(url, process, timeout_s)
        _wait_workers(url, workers, process, timeout_s - (time.monotonic() - started))
    except RuntimeError as error:
        stop(process)
        raise RuntimeError(f"{error}; log {log_path}:\n{log_tail(log_path)}") from error
    return process


def _wait_workers(url: str, workers: int, process: subprocess.Popen, timeout_s: float) -> None:
    """Return once ``workers`` distinct processes have answered ``url``.

    uvicorn's workers share one listening socket and each accepts only once its model is
    loaded, so the first answer can come while the others still export theirs.
    """
    deadline = time.monotonic() + timeout_s
    pids: set[int] = set()
    while len(pids) < workers:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url}: {len(pids)} of {workers} workers up after {timeout_s} s")
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(url, timeout=5) as response:
                pids.add(json.load(response)["pid"])
        time.sleep(0.05)


def stop(process: subprocess.Popen, timeout_s: float = 15) -> None:
    """SIGTERM the server's process group, wait up to ``timeout_s`` s, then SIGKILL it."""
    if process.poll() is None:
        stop_group(process, timeout_s)
