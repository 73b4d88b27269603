"""Infinity (``infinity-emb`` 0.0.78, github.com/michaelfeil/infinity) as a benchmark peer.

Infinity pins ``sentence-transformers<4``, ``numpy<2`` and ``transformers<5``, which clash with
this project's environment, so it lives in its own virtualenv (``VENV``, under the git-ignored
``.bench/``) and runs as a separate process; this module imports only the standard library (and
``bench.processes``, which does too), so the harness can use it from the main Python.

    exe = ensure_installed()                      # once; later calls only check a stamp
    proc = start(model_dir, port=8002)            # blocks until ``GET /models`` lists the model
    try:
        ...  # POST embed_path() with request_body(["a sentence", ...])
    finally:
        stop(proc)

Two engines (``engine=``): ``"torch"`` (sentence-transformers / a transformers pipeline) and
``"optimum"`` (ONNX Runtime through optimum-onnx, Infinity's best on CPU). The server is
started as (see ``command()``)::

    infinity_emb v2 --model-id <dir> --served-model-name all-MiniLM-L6-v2 \\
        --engine torch --device cpu --batch-size 64 --port <port> --host 127.0.0.1 \\
        --no-vector-disk-cache --no-compile --no-bettertransformer --log-level warning
    # optimum: --model-id . (run in the export) --engine optimum --batch-size 32, and
    # --pooling-method mean (embedders) or --no-model-warmup (classifiers)

with ``OMP_NUM_THREADS=MKL_NUM_THREADS=<threads>``, ``TOKENIZERS_PARALLELISM=false``,
``INFINITY_HOME`` under ``.bench/``, and everything that could reach the network switched off
(``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE``, ``HF_HUB_DISABLE_TELEMETRY``, ``DO_NOT_TRACK``,
``INFINITY_ANONYMOUS_USAGE_STATS=0``). ``--no-vector-disk-cache`` matters: a result cache would
turn a benchmark that repeats one sentence into a lookup.

The optimum engine never exports: it needs ``*.onnx`` files in the model directory, so
``start(engine="optimum")`` first exports the model once (``onnx_model_dir()``, see
``bench/infinity_onnx.py``) and serves that export. What Infinity 0.0.78 does by itself,
and what is done about it here:

- it pools by the [CLS] token unless told ``--pooling-method mean`` (``command()`` passes the
  pooling of the model's own ``*_Pooling/config.json``; with [CLS] pooling MiniLM's embeddings
  were off by up to 0.71), and it always L2-normalises;
- it pads/truncates at ``max_position_embeddings`` (512), not sentence-transformers'
  ``max_seq_length`` (256 for MiniLM): texts over 256 tokens differ from SentenceTransformer;
- it tries to optimise the graph (ORT transformer fusions) on first start, which fails with
  optimum-onnx 0.1.0 (``optimize_with_onnxruntime_only`` is gone; a warning in the log) and
  serves the exported graph, which ONNX Runtime still optimises at load
  (``ORT_ENABLE_ALL``). That costs nothing: the level-99 graph it meant to make ran 10-27%
  *slower* here (one ORT session, batch 1 and 32, 1 and 2 threads);
- ONNX Runtime's intra-op pool is its default, one thread per core (2 here):
  ``OMP_NUM_THREADS`` does not reach it and Infinity has no flag for it. Patched to 1 thread
  (an experiment, not kept) it was as fast at 64 clients and 15% slower at 1 client;
- as a classifier it does not truncate: a text over the model's positions breaks the model
  worker and *every later request hangs* (no error comes back); and its start-up warm-up sends
  such a text, so ``command()`` passes ``--no-model-warmup`` for optimum classifiers.

Per-engine defaults (``DEFAULTS``) are the best measured on the 2-core machine; the
measurements are in docs/performance.md ("Infinity's configuration").

Routes: ``POST /embeddings`` (``embed_path()``, ``request_body()``) and ``POST /classify``
(``classify_path()``, ``classify_body()``), their answers in those functions' docstrings.
``model`` is the ``--served-model-name`` (without that flag it would be the last two parts of the
directory path); with a single model loaded Infinity 0.0.78 accepts any or no ``model`` value.
Embeddings come back L2-normalised, equal to ``SentenceTransformer(dir).encode(texts)`` for
all-MiniLM-L6-v2 (whose own pipeline normalises): within 2e-7 on optimum, 3e-8 on torch.
Classifications are ``pipeline("text-classification", top_k=None)``'s answer: softmax over
every label, best first (``raw_scores`` is accepted and ignored by 0.0.78); both engines
within 2e-7 of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench import infinity_onnx
from bench.infinity_install import PINS, VENV, ensure_installed, executable, offline_env
from bench.infinity_onnx import is_classifier, pooling_method
from bench.processes import log_tail, stop_group

# The installation and the export are in their own modules; callers reach them from here.
__all__ = ["DEFAULTS", "ENGINES", "VENV", "classify_body", "classify_path", "command",
           "embed_path", "ensure_installed", "environment", "is_classifier", "onnx_model_dir",
           "pooling_method", "request_body", "start", "stop"]

REPO = Path(__file__).resolve().parents[1]
ONNX_CACHE = REPO / ".bench" / "infinity-onnx"  # exported models, one folder per source + PINS
# INFINITY_HOME: where the server makes its (unused: --no-vector-disk-cache) .infinity_cache
# folder, which would otherwise land in its working directory.
INFINITY_HOME = REPO / ".bench" / "infinity-home"

SERVED_MODEL_NAME = "all-MiniLM-L6-v2"
READY_ROUTE = "/models"       # GET; 200 with {"data": [{"id": SERVED_MODEL_NAME, ...}]} once loaded
HEALTH_ROUTE = "/health"      # GET; {"unix": ...} (answers as soon as uvicorn is up)
EMBED_ROUTE = "/embeddings"   # POST; OpenAI-style body, see request_body()
CLASSIFY_ROUTE = "/classify"  # POST; see classify_body()


@dataclass(frozen=True)
class EngineDefaults:
    """The best configuration measured for one engine on 2 cores (docs/performance.md)."""

    threads: int     # OMP_NUM_THREADS/MKL_NUM_THREADS (ONNX Runtime ignores them)
    batch_size: int  # Infinity's --batch-size: most texts per forward pass


ENGINES = ("torch", "optimum")
DEFAULTS: dict[str, EngineDefaults] = {
    "torch": EngineDefaults(threads=2, batch_size=64),
    "optimum": EngineDefaults(threads=1, batch_size=32),
}


def embed_path() -> str:
    """The route that embeds: ``POST /embeddings`` with ``request_body(...)`` as JSON; it
    answers OpenAI's ``{"object": "list", "model", "usage", "data": [{"object": "embedding",
    "index", "embedding"}, ...]}``."""
    return EMBED_ROUTE


def request_body(texts: str | list[str], model: str = SERVED_MODEL_NAME) -> dict:
    """The JSON body for ``embed_path()``: ``{"model": ..., "input": str | [str, ...]}``."""
    return {"model": model, "input": texts}


def classify_path() -> str:
    """The route that classifies (``*SequenceClassification`` models only): ``POST /classify``
    with ``classify_body(...)`` as JSON; it answers ``{"object": "classify", "model", "usage",
    "data": [[{"label", "score"}, ...], ...]}`` (per text every label, best first)."""
    return CLASSIFY_ROUTE


def classify_body(texts: str | list[str], model: str = SERVED_MODEL_NAME) -> dict:
    """The JSON body for ``classify_path()``: ``{"model": ..., "input": [str, ...]}``.

    One text is wrapped in a list: 0.0.78's ``ClassifyInput.input`` accepts only a list (422
    otherwise). ``model`` is the server's ``served_model_name``.
    """
    return {"model": model, "input": [texts] if isinstance(texts, str) else list(texts)}


def onnx_model_dir(model_dir: str | Path, venv: Path = VENV, timeout: float = 600.0,
                   cache: Path = ONNX_CACHE) -> Path:
    """The ONNX export of ``model_dir`` for the optimum engine, made once under ``cache``
    (``bench.infinity_onnx.onnx_model_dir``)."""
    return infinity_onnx.onnx_model_dir(model_dir, venv, offline_env(), PINS, cache, timeout)


def command(model_dir: str, port: int, batch_size: int | None = None, venv: Path = VENV,
            log_level: str = "warning", engine: str = "torch",
            served_model_name: str = SERVED_MODEL_NAME) -> list[str]:
    """The server's command line; ``batch_size`` None is ``DEFAULTS[engine].batch_size``.

    For ``engine="optimum"``, ``model_dir`` must hold ``model.onnx`` (``onnx_model_dir()``) and
    the command must run *in* ``model_dir``: it passes ``--model-id .``. Infinity 0.0.78 lists a
    local dir's files with their dir prefix and hands that path to optimum-onnx 0.1.0 as
    ``file_name``, which it compares with bare file names ("model.onnx"): any other local path
    fails with "Could not find any ONNX files with target file name ...".
    """
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: expected one of {ENGINES}")
    batch_size = DEFAULTS[engine].batch_size if batch_size is None else batch_size
    cmd = [str(executable(venv)), "v2",
           "--model-id", "." if engine == "optimum" else str(model_dir),
           "--served-model-name", served_model_name,
           "--engine", engine, "--device", "cpu", "--batch-size", str(batch_size),
           "--port", str(port), "--host", "127.0.0.1",
           "--no-vector-disk-cache", "--no-compile", "--no-bettertransformer",
           "--log-level", log_level]
    if engine == "optimum" and is_classifier(model_dir):
        # Its warm-up classifies "warm " * 512 (514 tokens) and OptimumClassifier's pipeline
        # does not truncate: ONNX Runtime fails on the position embeddings and the server
        # never starts. Without warm-up, a text over the model's limit gets a 500 instead.
        cmd += ["--no-model-warmup"]
    elif engine == "optimum":
        cmd += ["--pooling-method", pooling_method(model_dir)]
    return cmd


def environment(threads: int, hub_cache: Path | None = None) -> dict[str, str]:
    """The server's environment; ``hub_cache``: its ``HF_HUB_CACHE`` (the optimum engine keeps
    ``infinity_onnx/<provider>/<model id>/model_optimized.onnx`` there)."""
    env = offline_env()
    env.update({
        "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false", "INFINITY_HOME": str(INFINITY_HOME),
    })
    if hub_cache is not None:
        env["HF_HUB_CACHE"] = str(hub_cache)
    return env


def _ready(port: int, served_model_name: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{READY_ROUTE}", timeout=2) as response:
            body = json.load(response)
    except (OSError, ValueError):
        return False
    return any(m.get("id") == served_model_name for m in body.get("data", []))


def start(model_dir: str, port: int, batch_size: int | None = None,
          log_path: Path | None = None, threads: int | None = None, timeout: float = 180.0,
          venv: Path = VENV, log_level: str = "warning", engine: str = "torch",
          served_model_name: str = SERVED_MODEL_NAME) -> subprocess.Popen:
    """Start Infinity in its own process group and wait until ``GET /models`` lists the model.

    ``ensure_installed()`` must have run. ``batch_size``/``threads`` None take
    ``DEFAULTS[engine]``. For ``engine="optimum"`` the model is first exported to ONNX
    (``onnx_model_dir()``, once; not counted in ``timeout``). Output goes to ``log_path`` (a
    temp file if None; the path is kept as ``proc.log_path``). Raises RuntimeError with the
    log's tail if the server exits or is not ready within ``timeout`` seconds (it is stopped
    first in the latter case).
    """
    exe = executable(venv)
    if not exe.exists():
        raise RuntimeError(f"{exe} not found; call bench.infinity.ensure_installed() first")
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: expected one of {ENGINES}")
    threads = DEFAULTS[engine].threads if threads is None else threads
    served = Path(onnx_model_dir(model_dir, venv) if engine == "optimum" else model_dir)
    # The optimum engine runs in its export (``--model-id .``) with the export's own hub cache.
    cwd, hub_cache = (served, served.parent / "hub") if engine == "optimum" else (None, None)
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix=f"infinity-{port}-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = command(str(served), port, batch_size, venv, log_level, engine, served_model_name)
    with open(log_path, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=environment(threads, hub_cache),
                                cwd=cwd, start_new_session=True)
    proc.log_path = log_path  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"infinity exited with code {proc.returncode} before it was ready; "
                               f"log {log_path}:\n{log_tail(log_path)}")
        if _ready(port, served_model_name):
            return proc
        time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"infinity not ready on port {port} after {timeout:.0f}s; "
                       f"log {log_path}:\n{log_tail(log_path)}")


def stop(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM the server's process group, wait up to ``timeout`` s, then SIGKILL it."""
    if proc.poll() is None:
        stop_group(proc, timeout)
