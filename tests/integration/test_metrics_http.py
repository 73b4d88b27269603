"""Prometheus metrics exported through Ray's metrics agent, scraped as Prometheus would."""

from __future__ import annotations

import re
import time

import httpx

# Every stage docs/operations.md tells operators to watch, for the model that served the requests.
EXPECTED = [
    'ray_nlp_requests_total{.*model="sentiment".*status="200".*}',
    'ray_nlp_requests_total{.*model="sentiment".*status="422".*}',
    'ray_nlp_request_latency_ms_bucket{.*model="sentiment".*}',
    'ray_nlp_tokenize_latency_ms_bucket{.*model="sentiment".*}',
    'ray_nlp_queue_wait_ms_bucket{.*model="sentiment".*}',
    'ray_nlp_forward_latency_ms_bucket{.*model="sentiment".*}',
    'ray_nlp_postprocess_latency_ms_bucket{.*model="sentiment".*}',
    'ray_nlp_batch_texts_bucket{.*model="sentiment".*}',
    'ray_nlp_batch_tokens_bucket{.*model="sentiment".*}',
    'ray_nlp_padding_ratio_bucket{.*model="sentiment".*}',
    'ray_nlp_tokens_total{.*model="sentiment".*}',
]


def _metrics_url() -> str:
    import ray

    (node,) = [n for n in ray.nodes() if n["Alive"]]
    return f"http://127.0.0.1:{node['MetricsExportPort']}/metrics"


def _sum(text: str, pattern: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if re.fullmatch(pattern + r" \S+", line))


def _exported(patterns: list[str]) -> str:
    """The scraped metrics once every pattern has a line (asserts they all do in 90 s)."""
    url, missing, text = _metrics_url(), patterns, ""
    deadline = time.monotonic() + 90  # Ray's agent exports every few seconds
    while missing and time.monotonic() < deadline:
        time.sleep(2)
        text = httpx.get(url, timeout=10).text
        missing = [p for p in patterns if not any(re.fullmatch(p + r" \S+", line)
                                                  for line in text.splitlines())]
    assert not missing, f"not exported: {missing}"
    return text


def test_stages_are_exported(http):
    texts = ["a short one", "a somewhat longer text to pad the others in the batch"]
    for _ in range(3):
        assert http.post("/models/sentiment", json={"inputs": texts}).status_code == 200
    assert http.post("/models/sentiment", json={"inputs": ""}).status_code == 422
    text = _exported(EXPECTED)
    assert _sum(text, EXPECTED[0]) >= 3
    # Two texts of different lengths per call: some padding, and the tokens were counted.
    assert _sum(text, EXPECTED[-1]) >= 3 * 2 * 3


GENERATION = [
    'ray_nlp_time_to_first_token_ms_bucket{.*model="gpt2".*}',
    'ray_nlp_generated_tokens_total{.*model="gpt2".*}',
    'ray_nlp_generation_running{.*model="gpt2".*}',
    'ray_nlp_generation_waiting{.*model="gpt2".*}',
]


def test_generation_is_exported(http):
    for _ in range(2):
        response = http.post("/models/gpt2", json={"inputs": "the movie",
                                                   "parameters": {"max_new_tokens": 4}})
        assert response.status_code == 200
    text = _exported(GENERATION)
    assert _sum(text, GENERATION[1]) >= 2
