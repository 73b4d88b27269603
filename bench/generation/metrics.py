"""One measured point from the load generator's records (``bench.generation.client``):
output tokens/s over the window and time-to-first-token percentiles.

- A request's output tokens are the count the server reported at the end of its stream
  (``usage.completion_tokens`` on ``/v1/completions``, ``details.generated_tokens`` on
  ``/models/{name}``); a stream cut before its end counts its text chunks, one token each.
- Tokens/s: each request's tokens are spread evenly over its text chunks; the tokens of the
  chunks that arrived inside the window, divided by the window's length.
- TTFT: from sending a request to its first chunk holding text, over the requests sent
  inside the window (those that never got one are counted in ``no_first_token``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.generation.client import CUT


def summarize(result: dict[str, Any], max_tokens: list[int]) -> dict[str, Any]:
    """The point's numbers.

    Args:
        result: the client's output (``window``, ``records``, ``cpu_s``, ``cpus``).
        max_tokens: ``max_tokens`` of each request of the list (by its index), to count the
            answers whose length differs (EOS generated, or cut).

    Returns:
        tokens_s, ttft_p50_ms, ttft_p99_ms, latency_p50_ms, requests (sent in the window),
        completed, errors (message → count), cut (still streaming after the drain: not an
        error, the answer was just long), length_mismatches, no_first_token,
        mean_output_tokens, loadgen_cpu_share.
    """
    start, end = result["window"]
    records = result["records"]
    in_window_tokens = 0.0
    for record in records:
        chunks = record["chunks"]
        if not chunks:
            continue
        tokens = record["tokens"] if record["tokens"] is not None else len(chunks)
        inside = sum(1 for t in chunks if start <= t < end)
        in_window_tokens += tokens * inside / len(chunks)
    sent = [r for r in records if start <= r["sent"] < end]
    ttft = [(r["chunks"][0] - r["sent"]) * 1e3 for r in sent if r["chunks"]]
    latency = [(r["end"] - r["sent"]) * 1e3 for r in sent if r["end"] is not None
               and r["error"] is None]
    errors: dict[str, int] = {}
    for record in sent:
        if record["error"] and record["error"] != CUT:
            key = record["error"][:40] if record["error"].startswith("HTTP") else \
                record["error"].split(":")[0]
            errors[key] = errors.get(key, 0) + 1
    completed = [r for r in sent if r["error"] is None and r["tokens"] is not None]
    mismatches = sum(1 for r in completed if r["tokens"] != max_tokens[r["index"]])
    duration = end - start
    return {
        "tokens_s": in_window_tokens / duration if duration else 0.0,
        "ttft_p50_ms": _percentile(ttft, 50), "ttft_p99_ms": _percentile(ttft, 99),
        "latency_p50_ms": _percentile(latency, 50),
        "requests": len(sent), "completed": len(completed), "errors": errors,
        "cut": sum(1 for r in sent if r["error"] == CUT),
        "length_mismatches": mismatches,
        "no_first_token": sum(1 for r in sent if not r["chunks"]),
        "mean_output_tokens": (sum(r["tokens"] for r in completed) / len(completed)
                               if completed else 0.0),
        "loadgen_cpu_share": result["cpu_s"] / (result["elapsed_s"] * result["cpus"]),
    }


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None
