"""The plain baseline: one FastAPI process calling ``transformers.pipeline`` per request.

What a user writes without this project (the classic tutorial setup), for one task:

- ``feature-extraction`` (the default), ``POST /embed``: sentence embeddings are the
  pipeline's token embeddings, mean-pooled and normalised as all-MiniLM-L6-v2 does;
- ``text-classification``, ``POST /classify`` (also on ``/embed``, the harness's path):
  every label with its score, best first.

Either way the body is ``{"inputs": text or [texts]}`` and the answer equals this
project's on ``POST /models/{name}``; each text is one pipeline call.

Run: ``BENCH_MODEL_DIR=<dir> [BENCH_TASK=text-classification] uvicorn bench.baseline_app:app``
"""

from __future__ import annotations

import os

import numpy as np
from fastapi import Body, FastAPI
from transformers import pipeline

TASK = os.environ.get("BENCH_TASK", "feature-extraction")

runner = pipeline(TASK, model=os.environ["BENCH_MODEL_DIR"], device="cpu")
app = FastAPI()


def _embed(text: str) -> list[float]:
    tokens = np.asarray(runner(text, truncation=True)[0])  # [tokens, dim]
    vector = tokens.mean(axis=0)
    return (vector / max(float(np.linalg.norm(vector)), 1e-12)).tolist()


def embed(inputs: str | list[str] = Body(embed=True)) -> list:
    if isinstance(inputs, str):
        return _embed(inputs)
    return [_embed(text) for text in inputs]


def classify(inputs: str | list[str] = Body(embed=True)) -> list:
    # As the Inference API (and this project) answer: every label, best first, in one
    # list per input, even for a single string.
    texts = [inputs] if isinstance(inputs, str) else inputs
    return [runner(text, truncation=True, top_k=None) for text in texts]


# Each task's route, and /embed for every task: the harness's one path to a baseline.
ROUTES = {"feature-extraction": (embed, ["/embed"]),
          "text-classification": (classify, ["/classify", "/embed"])}
route, paths = ROUTES[TASK]
for path in paths:
    app.post(path)(route)


@app.get("/health")
def health() -> dict:
    return {"status": "ok"}
