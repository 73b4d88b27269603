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

The optimum engine never exports: it looks for ``*.onnx`` files in the model directory and
fails without one. So ``start(engine="optimum")`` first exports the model once with optimum's
``main_export`` into ``ONNX_CACHE/<name>-<key>/model/`` (``onnx_model_dir()``: config,
tokenizer, ``model.onnx`` and the sentence-transformers pooling config, all copies, never
links), and serves that directory (see ``command()`` for why as ``--model-id .``). The source
directory (site-packages, for MiniLM) is never written to. What Infinity 0.0.78 does by
itself, and what is done about it here:

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

Per-engine defaults (``DEFAULTS``), the best measured on the 2-core machine (below):

- torch: ``threads=2, batch_size=64``. One intra-op thread left a core idle at 64 clients
  (the server used 1.05 CPUs); two gave +22% there, at the price of ~10% at 1 client.
- optimum: ``threads=1`` (OMP/MKL: nothing on its path uses them), ``batch_size=32``
  (Infinity's own default; 64 measured the same).

Routes::

    POST /embeddings   (embed_path(), request_body())
    {"model": "all-MiniLM-L6-v2", "input": "one sentence"}        # or "input": ["a", "b", ...]
    -> {"object": "list", "model": ..., "usage": {...},
        "data": [{"object": "embedding", "index": 0, "embedding": [384 floats]}, ...]}

    POST /classify     (classify_path(), classify_body()); only for a *SequenceClassification
    {"model": "<served name>", "input": ["one text", ...]}         # a list, even for one text
    -> {"object": "classify", "model": ..., "usage": {...},
        "data": [[{"label": "POSITIVE", "score": 0.73}, {"label": "NEGATIVE", ...}], ...]}

``model`` is the ``--served-model-name`` (without that flag it would be the last two parts of the
directory path); with a single model loaded Infinity 0.0.78 accepts any or no ``model`` value.
Embeddings come back L2-normalised, equal to ``SentenceTransformer(dir).encode(texts)`` for
all-MiniLM-L6-v2 (whose own pipeline normalises): within 2e-7 on optimum, 3e-8 on torch.
Classifications are ``pipeline("text-classification", top_k=None)``'s answer: softmax over
every label, best first (``raw_scores`` is accepted and ignored by 0.0.78); both engines
within 2e-7 of it.

Measured 2026-11-30 (infinity-emb 0.0.78, onnxruntime 1.32.0, torch 2.13.0 CPU; 2-core AMD
EPYC VM): all-MiniLM-L6-v2, single short texts (``Workload("short", 1)``), ``wrk`` closed
loop, 3 s warm-up then 10 s; each configuration in its own server, 3-6 runs spread over an
hour, runs disturbed by other processes (>10% of the CPUs) repeated; median req/s (range),
median p50/p99 ms. ``threads`` = OMP/MKL; "ORT 1" = the 1-thread experiment above.

    engine   threads batch   64 clients: req/s       p50  p99    1 client: req/s    p50
    torch    1       32      252 (237-264)           237  533    68 (66-68)         14.5
    torch    1       64      241 (220-255)           247  534    60 (53-63)         16.3
    torch    2       32      271 (258-326)           213  565    59 (59-63)         16.5
    torch    2       64      308 (287-329)  default  199  503    60 (59-64)         16.3
    optimum  1       32      586 (533-618)  default   94  395   104 (94-107)         9.5
    optimum  1       64      582 (512-624)            94  404   108 (89-114)         9.3
    optimum  ORT 1   32      558 (552-565)            98  387    89 (89-90)         11.1
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.processes import install_venv, log_tail, stop_group, venv_env

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".bench" / "infinity-venv"
ONNX_CACHE = REPO / ".bench" / "infinity-onnx"  # exported models, one folder per source + PINS
# INFINITY_HOME: where the server makes its (unused: --no-vector-disk-cache) .infinity_cache
# folder, which would otherwise land in its working directory.
INFINITY_HOME = REPO / ".bench" / "infinity-home"

# A set found to install and serve on CPython 3.11 (CPU torch from the local wheel). The
# ``torch==2.13.0`` pin is what selects the local CPU wheel; a looser spec pulls a CUDA build.
# The others fix what ``infinity-emb`` leaves open (sentence-transformers<4, transformers<5,
# numpy<2, fastapi/uvicorn/typer ranges, optimum>=1.24) to the versions verified together.
# optimum 2.x moved ONNX Runtime support into optimum-onnx; 0.1.0 is the release that allows
# transformers 4.57 (<4.58) and it requires optimum~=2.1.0. optimum 1.27 would need <4.54.
PINS: tuple[str, ...] = (
    "torch==2.13.0",
    "infinity-emb[torch,server,optimum]==0.0.78",
    "sentence-transformers==3.4.1",
    "transformers==4.57.6",
    "tokenizers==0.22.2",
    "huggingface_hub==0.36.2",
    "numpy==1.26.4",
    "optimum[onnxruntime]==2.1.0",
    "optimum-onnx==0.1.0",
    "onnxruntime==1.32.0",
    "onnx==1.23.2",
    "protobuf==7.36.2",
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
CHECK = ("import torch, sentence_transformers, infinity_emb, infinity_emb.infinity_server, "
         "onnxruntime, optimum.onnxruntime, optimum.exporters.onnx")
ONNX_STAMP = ".bench-onnx-exported"

SERVED_MODEL_NAME = "all-MiniLM-L6-v2"
READY_ROUTE = "/models"       # GET; 200 with {"data": [{"id": SERVED_MODEL_NAME, ...}]} once loaded
HEALTH_ROUTE = "/health"      # GET; {"unix": ...} (answers as soon as uvicorn is up)
EMBED_ROUTE = "/embeddings"   # POST; OpenAI-style body, see request_body()
CLASSIFY_ROUTE = "/classify"  # POST; see classify_body()


@dataclass(frozen=True)
class EngineDefaults:
    """The best configuration measured for one engine on 2 cores (see the module docstring)."""

    threads: int     # OMP_NUM_THREADS/MKL_NUM_THREADS (ONNX Runtime ignores them)
    batch_size: int  # Infinity's --batch-size: most texts per forward pass


ENGINES = ("torch", "optimum")
DEFAULTS: dict[str, EngineDefaults] = {
    "torch": EngineDefaults(threads=2, batch_size=64),
    "optimum": EngineDefaults(threads=1, batch_size=32),
}
DEFAULT_THREADS = DEFAULTS["torch"].threads  # kept for callers from before the optimum engine


def executable(venv: Path = VENV) -> Path:
    return Path(venv) / "bin" / "infinity_emb"


def embed_path() -> str:
    """The route that embeds: ``POST /embeddings`` with ``request_body(...)`` as JSON."""
    return EMBED_ROUTE


def request_body(texts: str | list[str], model: str = SERVED_MODEL_NAME) -> dict:
    """The JSON body for ``embed_path()``: ``{"model": ..., "input": str | [str, ...]}``."""
    return {"model": model, "input": texts}


def classify_path() -> str:
    """The route that classifies: ``POST /classify`` with ``classify_body(...)`` as JSON."""
    return CLASSIFY_ROUTE


def classify_body(texts: str | list[str], model: str = SERVED_MODEL_NAME) -> dict:
    """The JSON body for ``classify_path()``: ``{"model": ..., "input": [str, ...]}``.

    One text is wrapped in a list: 0.0.78's ``ClassifyInput.input`` accepts only a list (422
    otherwise). ``model`` is the server's ``served_model_name``.
    """
    return {"model": model, "input": [texts] if isinstance(texts, str) else list(texts)}


def _offline_env() -> dict[str, str]:
    env = venv_env()
    env.update({
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
        "DO_NOT_TRACK": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0", "PYTHONUNBUFFERED": "1",
    })
    return env


def ensure_installed(venv: Path = VENV) -> Path:
    """Create ``venv`` and install ``PINS`` into it unless its stamp says so already.

    Returns the path of the ``infinity_emb`` executable. Raises RuntimeError if any step fails.
    """
    install_venv("infinity", Path(venv), PINS, CHECK, STAMP)
    exe = executable(venv)
    if not exe.exists():
        raise RuntimeError(f"infinity install finished but {exe} is missing")
    return exe


def is_classifier(model_dir: str | Path) -> bool:
    """Whether Infinity serves ``model_dir`` on ``/classify`` (its own test, from config.json:
    a ``*SequenceClassification`` architecture with at least two labels; one label would make it
    a reranker)."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    return (any("SequenceClassification" in arch for arch in config.get("architectures", []))
            and len(config.get("id2label", {"0": "dummy"})) >= 2)


def pooling_method(model_dir: str | Path) -> str:
    """``mean``/``cls`` from the sentence-transformers pooling config in ``model_dir``, else
    ``auto`` (which Infinity's optimum engine takes as [CLS] pooling)."""
    for path in sorted(Path(model_dir).glob("*Pooling/config.json")):
        config = json.loads(path.read_text())
        if config.get("pooling_mode_mean_tokens"):
            return "mean"
        if config.get("pooling_mode_cls_token"):
            return "cls"
    return "auto"


# Run in the venv: optimum's exporter, with the transformers library forced so an embedder
# gives ``last_hidden_state`` (what Infinity's OptimumEmbedder reads; the sentence-transformers
# export would name its outputs token_embeddings/sentence_embedding).
_EXPORT = """
import sys
from optimum.exporters.onnx import main_export
main_export(sys.argv[1], output=sys.argv[2], task=sys.argv[3], library_name="transformers",
            do_validation=True)
"""


def _export_key(source: Path) -> str:
    """A hash of the source's path, its files' sizes and mtimes, and ``PINS``: a rebuilt model
    or another exporter gets a new export."""
    files = sorted((str(f.relative_to(source)), f.stat().st_size, f.stat().st_mtime_ns)
                   for f in source.rglob("*") if f.is_file())
    return hashlib.sha256(repr((str(source), files, PINS)).encode()).hexdigest()[:12]


def onnx_model_dir(model_dir: str | Path, venv: Path = VENV, timeout: float = 600.0,
                   cache: Path = ONNX_CACHE) -> Path:
    """The ONNX export of ``model_dir`` for the optimum engine, made once under ``cache``.

    Returns ``cache/<name>-<key>/model`` (``_export_key()``); its sibling ``hub/`` is the
    server's ``HF_HUB_CACHE``, where Infinity keeps the graph it optimises. The export is
    built in a temp folder and renamed into place, so an interrupted one is never served;
    nothing is written into ``model_dir``. Raises RuntimeError if the export fails.
    """
    source = Path(model_dir).resolve()
    key = _export_key(source)
    home = Path(cache) / f"{source.parent.name}-{source.name}-{key}"
    target = home / "model"
    if (target / ONNX_STAMP).exists():
        return target
    home.mkdir(parents=True, exist_ok=True)
    task = "text-classification" if is_classifier(source) else "feature-extraction"
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=home))
    log = home / "export.log"
    python = Path(venv) / "bin" / "python"
    print(f"infinity: exporting {source} to ONNX ({task}) in {target} (log: {log})", flush=True)
    try:
        with open(log, "w") as out:
            code = subprocess.call([str(python), "-c", _EXPORT, str(source), str(work), task],
                                   stdout=out, stderr=subprocess.STDOUT, env=_offline_env(),
                                   timeout=timeout)
        work.chmod(0o755)  # mkdtemp's 0700 would survive the rename
        if code != 0 or not (work / "model.onnx").exists():
            raise RuntimeError(f"ONNX export of {source} failed (exit {code}); "
                               f"log {log}:\n{log_tail(log)}")
        if (source / "modules.json").exists():  # so pooling_method() can read the export
            shutil.copy(source / "modules.json", work / "modules.json")
        for pooling in source.glob("*Pooling"):
            shutil.copytree(pooling, work / pooling.name, symlinks=False)
        (work / ONNX_STAMP).write_text(f"{source}\n{task}\n")
        if target.exists():  # a stale half-export from an older layout: replace it
            shutil.rmtree(target)
        os.rename(work, target)
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(f"ONNX export of {source} took over {timeout:.0f}s; log {log}") \
            from error
    except OSError:
        if not (target / ONNX_STAMP).exists():  # not a concurrent export that won the rename
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


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


def environment(threads: int = DEFAULT_THREADS, hub_cache: Path | None = None) -> dict[str, str]:
    """The server's environment; ``hub_cache``: its ``HF_HUB_CACHE`` (the optimum engine keeps
    ``infinity_onnx/<provider>/<model id>/model_optimized.onnx`` there)."""
    env = _offline_env()
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
