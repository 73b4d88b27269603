"""Prometheus metrics of the serving graph, exported through Ray's metrics agent.

Ray prefixes every name with ``ray_`` when it exports them (``ray_nlp_requests_total``);
the README lists them and which to watch. Create these objects inside the replica that
records them (``ray.util.metrics`` needs a connected Ray worker).
"""

from __future__ import annotations

from ray.util import metrics

# Milliseconds, from a fast tokenizer call to a slow generation.
_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000]
_TEXTS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
_TOKENS = [16, 64, 256, 1024, 4096, 16384, 65536, 262144]
_RATIO = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
_TAGS = ("model", "task")


class IngressMetrics:
    """Per request: its outcome and end-to-end latency (inside the ingress)."""

    def __init__(self) -> None:
        self._requests = metrics.Counter(
            "nlp_requests", "Requests answered, by model, task and HTTP status.",
            tag_keys=(*_TAGS, "status"),
        )
        self._latency = metrics.Histogram(
            "nlp_request_latency_ms", "Time from the ingress receiving a request to its answer.",
            boundaries=_MS, tag_keys=(*_TAGS, "status"),
        )

        self._retries = metrics.Counter(
            "nlp_retries", "Pipeline calls made again because their replica died."
        )
        self._refused = metrics.Counter(
            "nlp_refused", "HTTP requests refused by the ingress's admission control "
            "(reason: overloaded = 429, timeout = 504).", tag_keys=("reason",),
        )

    def request(self, model: str, task: str, status: int, seconds: float) -> None:
        tags = {"model": model, "task": task, "status": str(status)}
        self._requests.inc(1, tags)
        self._latency.observe(seconds * 1000, tags)

    def retried(self) -> None:
        self._retries.inc(1)

    def refused(self, reason: str) -> None:
        self._refused.inc(1, {"reason": reason})


class TokenizerMetrics:
    def __init__(self, model: str, task: str) -> None:
        self._tags = {"model": model, "task": task}
        self._latency = metrics.Histogram(
            "nlp_tokenize_latency_ms", "One tokenizer call (several requests' texts).",
            boundaries=_MS, tag_keys=_TAGS,
        )

    def tokenized(self, seconds: float) -> None:
        self._latency.observe(seconds * 1000, self._tags)


class ModelMetrics:
    """Per batch of a model replica: queue wait, forward, post-processing, batch shape."""

    def __init__(self, model: str, task: str) -> None:
        self._tags = {"model": model, "task": task}

        def histogram(name: str, description: str, boundaries: list[float]):
            return metrics.Histogram(name, description, boundaries=boundaries, tag_keys=_TAGS)

        self._queue = histogram(
            "nlp_queue_wait_ms", "Time a request's texts waited for a model batch.", _MS
        )
        self._forward = histogram("nlp_forward_latency_ms", "One batch's forward passes.", _MS)
        self._postprocess = histogram(
            "nlp_postprocess_latency_ms", "Post-processing of one call's answers.", _MS
        )
        self._texts = histogram("nlp_batch_texts", "Texts (rows) per model batch.", _TEXTS)
        self._batch_tokens = histogram(
            "nlp_batch_tokens", "Padded tokens per model batch (what the model computes).",
            _TOKENS,
        )
        self._padding = histogram(
            "nlp_padding_ratio", "Share of a batch's padded tokens that are padding.", _RATIO
        )
        self._tokens = metrics.Counter(
            "nlp_tokens", "Tokens the model read (padding excluded).", tag_keys=_TAGS
        )

    def waited(self, seconds: float) -> None:
        self._queue.observe(seconds * 1000, self._tags)

    def batch(self, texts: int, tokens: int, padded_tokens: int, seconds: float) -> None:
        self._forward.observe(seconds * 1000, self._tags)
        self._texts.observe(texts, self._tags)
        self._batch_tokens.observe(padded_tokens, self._tags)
        if padded_tokens:
            self._padding.observe(1 - tokens / padded_tokens, self._tags)
        if tokens > 0:  # Ray's Counter.inc refuses 0 (generators report no tokens)
            self._tokens.inc(tokens, self._tags)

    def postprocessed(self, seconds: float) -> None:
        self._postprocess.observe(seconds * 1000, self._tags)


class GenerationMetrics:
    """Per sequence of a text-generation replica: time to first token, tokens generated,
    and how many sequences decode or wait (continuous batching)."""

    def __init__(self, model: str, task: str) -> None:
        self._tags = {"model": model, "task": task}
        self._first_token = metrics.Histogram(
            "nlp_time_to_first_token_ms", "From a prompt's arrival in the replica to its "
            "first generated token.", boundaries=_MS, tag_keys=_TAGS,
        )
        self._generated = metrics.Counter(
            "nlp_generated_tokens", "Tokens generated.", tag_keys=_TAGS
        )
        self._running = metrics.Gauge(
            "nlp_generation_running", "Sequences in the running batch.", tag_keys=_TAGS
        )
        self._waiting = metrics.Gauge(
            "nlp_generation_waiting", "Sequences waiting to join the running batch.",
            tag_keys=_TAGS,
        )

    def first_token(self, seconds: float) -> None:
        self._first_token.observe(seconds * 1000, self._tags)

    def generated(self, tokens: int, running: int, waiting: int) -> None:
        """One sequence ended after ``tokens``; the loop now holds ``running``/``waiting``."""
        if tokens > 0:
            self._generated.inc(tokens, self._tags)
        self._running.set(running, self._tags)
        self._waiting.set(waiting, self._tags)


class PoolMetrics:
    """A pool replica's model loads and unloads (Serve adds its own
    ``ray_serve_multiplexed_*`` metrics per deployment)."""

    def __init__(self, pool: str, task: str) -> None:
        self._pool, self._task = pool, task
        self._loads = metrics.Counter(
            "nlp_pool_loads", "Pool members loaded, by outcome (ok, failed).",
            tag_keys=(*_TAGS, "outcome"),
        )
        self._unloads = metrics.Counter(
            "nlp_pool_unloads", "Pool members unloaded for others (least recently used).",
            tag_keys=_TAGS,
        )
        self._load_latency = metrics.Histogram(
            "nlp_pool_load_latency_ms", "Loading one pool member (weights and tokenizer).",
            boundaries=_MS, tag_keys=_TAGS,
        )
        self._loaded = metrics.Gauge(
            "nlp_pool_models_loaded", "Pool members held by one replica.", tag_keys=("pool",),
        )

        self._exporting = metrics.Gauge(
            "nlp_pool_models_exporting",
            "Pool members held that still run in PyTorch until their ONNX export is done "
            "(engine: onnx or openvino).", tag_keys=("pool",),
        )

    def exporting(self, pending: int) -> None:
        self._exporting.set(pending, {"pool": self._pool})

    def loaded(self, member: str, seconds: float | None, held: int) -> None:
        """One load of ``member`` (its metric label); ``seconds`` is None if it failed."""
        tags = {"model": f"{self._pool}/{member}", "task": self._task}
        self._loads.inc(1, {**tags, "outcome": "failed" if seconds is None else "ok"})
        if seconds is not None:
            self._load_latency.observe(seconds * 1000, tags)
        self._loaded.set(held, {"pool": self._pool})

    def unloaded(self, member: str, held: int) -> None:
        self._unloads.inc(1, {"model": f"{self._pool}/{member}", "task": self._task})
        self._loaded.set(held, {"pool": self._pool})
