"""The plain baseline: one FastAPI process calling ``transformers.pipeline`` per request.

What a user writes without this project (the classic tutorial setup). Sentence embeddings
are the pipeline's token embeddings, mean-pooled and normalised as all-MiniLM-L6-v2 does,
so its answers equal this project's.

Run: ``BENCH_MODEL_DIR=<dir> uvicorn bench.baseline_app:app --port 8001``
"""

from __future__ import annotations

import os

import numpy as np
from fastapi import Body, FastAPI
from transformers import pipeline

extractor = pipeline("feature-extraction", model=os.environ["BENCH_MODEL_DIR"], device="cpu")
app = FastAPI()


def _embed(text: str) -> list[float]:
    tokens = np.asarray(extractor(text, truncation=True)[0])  # [tokens, dim]
    vector = tokens.mean(axis=0)
    return (vector / max(float(np.linalg.norm(vector)), 1e-12)).tolist()


@app.post("/embed")
def embed(inputs: str | list[str] = Body(embed=True)) -> list:
    if isinstance(inputs, str):
        return _embed(inputs)
    return [_embed(text) for text in inputs]


@app.get("/health")
def health() -> dict:
    return {"status": "ok"}
