"""The "st-onnx" peer: sentence-transformers' ONNX backend behind FastAPI, with a micro-batcher.

What a well-informed user writes without this project: the model runs on ONNX Runtime (the
export goes through optimum at start-up, as ``SentenceTransformer(dir, backend="onnx")`` does
for a directory without ``onnx/model.onnx``), and concurrent requests are merged by one asyncio
worker into ``model.encode`` calls of up to ``MAX_BATCH`` texts, run off the event loop.

It runs in its own virtualenv (see ``bench/st_onnx.py``, which starts it), configured by:
``BENCH_MODEL_DIR`` (the model), ``BENCH_THREADS`` (ORT intra-op and torch threads),
``BENCH_WAIT_MS`` (how long to wait for more requests after the first; 0: take what waits).

Same contract as ``bench/baseline_app.py``: ``POST /embed`` with ``{"inputs": str | [str...]}``
answers one vector or a list of vectors; ``GET /health``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import onnxruntime as ort
import torch
from fastapi import Body, FastAPI
from sentence_transformers import SentenceTransformer

MAX_BATCH = 32
THREADS = int(os.environ.get("BENCH_THREADS", "1"))
WAIT_S = float(os.environ.get("BENCH_WAIT_MS", "0")) / 1000


def _load() -> SentenceTransformer:
    """The model on ONNX Runtime, exported by optimum into a temp dir on the way."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    torch.set_num_threads(THREADS)  # pooling and normalisation stay torch modules
    return SentenceTransformer(
        os.environ["BENCH_MODEL_DIR"], backend="onnx", device="cpu",
        model_kwargs={"provider": "CPUExecutionProvider", "session_options": options},
    )


model = _load()
# A full collection walks the ~430k objects torch, transformers and optimum leave behind: about
# 0.26 s, during which neither the event loop nor encode() runs; at 64 clients that was the
# p99 (400 ms against a p50 of 120). Frozen, they are never scanned again.
gc.freeze()
# One thread: encode calls never overlap, so ORT's intra-op pool is the only parallelism.
executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode")


def _future() -> asyncio.Future:
    return asyncio.get_running_loop().create_future()


@dataclass
class _Job:
    """One request's texts and the future its handler awaits."""

    texts: list[str]
    future: asyncio.Future = field(default_factory=_future)


def _encode(texts: list[str]) -> list[list[float]]:
    # all-MiniLM-L6-v2 normalises in its own Normalize module; asking again would be a no-op.
    return model.encode(texts, batch_size=MAX_BATCH, normalize_embeddings=False).tolist()


async def _batches(queue: asyncio.Queue[_Job]) -> None:
    """Take what is waiting (up to MAX_BATCH texts), encode it in one call, answer each job."""
    loop = asyncio.get_running_loop()
    held: _Job | None = None  # taken from the queue but did not fit the last batch
    while True:
        jobs = [held or await queue.get()]
        held = None
        if WAIT_S:
            await asyncio.sleep(WAIT_S)
        count = len(jobs[0].texts)
        while not queue.empty():
            job = queue.get_nowait()
            if count + len(job.texts) > MAX_BATCH:
                held = job
                break
            jobs.append(job)
            count += len(job.texts)
        try:
            vectors = await loop.run_in_executor(executor, _encode,
                                                 [text for job in jobs for text in job.texts])
        except Exception as error:  # every waiting request gets the failure
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(error)
            continue
        start = 0
        for job in jobs:
            if not job.future.done():  # the client may have gone
                job.future.set_result(vectors[start : start + len(job.texts)])
            start += len(job.texts)


def _remove_export() -> None:
    """Delete the start-up export (~90 MB in a temp dir): uvicorn re-raises SIGTERM after its
    shutdown, so the process dies before the TemporaryDirectory's own cleanup at exit."""
    exported = Path(model[0].auto_model.model_save_dir).resolve()
    source = Path(os.environ["BENCH_MODEL_DIR"]).resolve()
    # Only optimum's temp dir: a model shipped with onnx/model.onnx is loaded from its own.
    temporary = exported.is_relative_to(Path(tempfile.gettempdir()).resolve())
    if temporary and not exported.is_relative_to(source):
        shutil.rmtree(exported, ignore_errors=True)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI):
    app.state.queue = asyncio.Queue()
    worker = asyncio.create_task(_batches(app.state.queue))
    yield
    worker.cancel()
    _remove_export()


app = FastAPI(lifespan=_lifespan)


@app.post("/embed")
async def embed(inputs: str | list[str] = Body(embed=True)) -> list:
    """One vector for a string, a list of vectors for a list of strings."""
    texts = [inputs] if isinstance(inputs, str) else inputs
    if not texts:
        return []
    job = _Job(texts)
    await app.state.queue.put(job)
    vectors = await job.future
    return vectors[0] if isinstance(inputs, str) else vectors


@app.get("/health")
def health() -> dict:
    """Answers once this worker's model is loaded; ``pid`` tells the workers apart."""
    return {"status": "ok", "pid": os.getpid()}
