"""The reliability scenarios, each against a running app at ``url``: capacity, overload,
a killed replica under load, and malformed or absurd requests."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request

from bench import loadgen
from bench.project import APP
from bench.reliability.replicas import MemorySampler, replica_pids
from bench.workloads import Workload

CLOSED_LOOP_CLIENTS = 64


def bodies(model: str) -> tuple[str, list[str]]:
    """The route of ``model`` and 256 request bodies of one short text each."""
    inputs = Workload("short", 1).requests(256)
    return f"/models/{model}", [json.dumps({"inputs": text}) for text in inputs]


def capacity(url: str, model: str, duration_s: float) -> dict:
    """Closed-loop req/s with ``CLOSED_LOOP_CLIENTS`` clients, after a short warm-up."""
    path, requests = bodies(model)
    loadgen.closed_loop(url, path, requests, 16, min(3.0, duration_s))  # warm-up
    measured = loadgen.closed_loop(url, path, requests, CLOSED_LOOP_CLIENTS, duration_s)
    return {"clients": CLOSED_LOOP_CLIENTS, "req_s": measured.requests / measured.duration_s,
            "errors": measured.errors, "p99_ms": measured.p99_ms}


def _outcomes(measured: loadgen.Measured) -> dict:
    """Sent = answered + refused + other statuses + lost (no answer at all)."""
    detail, errors = measured.detail, measured.errors
    refused_by_status = {status: errors.get(f"status_{status}", 0) for status in loadgen.REFUSALS}
    refused = sum(refused_by_status.values())
    statuses = sum(count for kind, count in errors.items() if kind.startswith("status_"))
    other = statuses - refused
    lost = detail["sent"] - detail["ok"] - refused - other
    return {"sent": detail["sent"], "answered": detail["ok"], "refused": refused,
            "other_status": other, "lost": lost,
            "hung": errors.get("hung", 0),
            "connection_errors": sum(count for kind, count in errors.items()
                                     if not kind.startswith("status_") and kind != "hung"),
            "refused_by_status": refused_by_status,
            "errors": errors, "answered_p50_ms": detail["ok_p50_ms"],
            "answered_p99_ms": detail["ok_p99_ms"], "refused_p50_ms": detail["refused_p50_ms"],
            "refused_p99_ms": detail["refused_p99_ms"], "retry_after": detail["retry_after"],
            "loadgen_cpu_share": measured.loadgen_cpu_share}


def overload(url: str, model: str, rate: float, duration_s: float) -> dict:
    """An open loop at ``rate`` req/s: its outcomes and the replicas' memory."""
    path, requests = bodies(model)
    with MemorySampler(APP) as memory:
        before = memory.now_mb()
        measured = loadgen.open_loop(url, path, requests, rate, duration_s)
        time.sleep(2)
        after = memory.now_mb()
    outcome = _outcomes(measured)
    return {"offered_req_s": rate, "duration_s": duration_s, **outcome,
            "answered_req_s": outcome["answered"] / measured.duration_s,
            "memory_mb": {"before": before, "peak": memory.peak_mb, "after": after}}


def kill_replica(url: str, model: str, deployment: str, rate: float, duration_s: float) -> dict:
    """SIGKILL one replica of ``deployment`` a few seconds into a steady open loop."""
    path, requests = bodies(model)
    pids = replica_pids(APP, deployment)
    if not pids:
        raise RuntimeError(f"no replica process of {deployment}")
    result: dict = {}
    load = threading.Thread(target=lambda: result.update(
        measured=loadgen.open_loop(url, path, requests, rate, duration_s)))
    load.start()
    time.sleep(min(3.0, duration_s / 4))
    os.kill(pids[0], signal.SIGKILL)
    killed = time.monotonic()
    replaced_s = None
    while load.is_alive() or replaced_s is None:
        live = replica_pids(APP, deployment)
        if replaced_s is None and len(live) >= len(pids) and pids[0] not in live:
            replaced_s = time.monotonic() - killed
        if replaced_s is None and time.monotonic() - killed > 300:
            break
        time.sleep(0.2)
    load.join()
    return {"deployment": deployment, "replicas": len(pids), "rate": rate,
            "duration_s": duration_s, "replaced_s": replaced_s,
            **_outcomes(result["measured"])}


def bad_inputs(model: str) -> list[tuple[str, str, bytes, dict[str, str]]]:
    """(what, path, body, headers) of malformed or absurd requests."""
    json_type = {"Content-Type": "application/json"}
    route = f"/models/{model}"

    def body(value) -> bytes:
        return json.dumps(value).encode()

    return [
        ("malformed JSON", route, b'{"inputs": ', json_type),
        ("inputs a number", route, body({"inputs": 5}), json_type),
        ("inputs an object", route, body({"inputs": {"a": 1}}), json_type),
        ("inputs nested lists", route, body({"inputs": [[["x"]]]}), json_type),
        ("missing inputs", route, body({"parameters": {}}), json_type),
        ("empty string", route, body({"inputs": ""}), json_type),
        ("empty list", route, body({"inputs": []}), json_type),
        ("whitespace only", route, body({"inputs": " \n\t "}), json_type),
        ("too many inputs", route, body({"inputs": ["x"] * 100_000}), json_type),
        ("too long, truncation off", route,
         body({"inputs": "word " * 2000, "parameters": {"truncation": False}}), json_type),
        ("body over the limit", route, body({"inputs": "x" * (3 * 1024 * 1024)}), json_type),
        ("invalid UTF-8", route, b'{"inputs": "\xff\xfe"}', json_type),
        ("lone surrogate", route, b'{"inputs": "\\ud800"}', json_type),
        ("NUL character", route, body({"inputs": "a\u0000b"}), json_type),
        ("control characters only", route, body({"inputs": "\u0001\u0002"}), json_type),
        ("unknown model", "/models/no-such-model", body({"inputs": "x"}), json_type),
        ("unknown parameter", route, body({"inputs": "x", "parameters": {"top_k": 2}}),
         json_type),
        ("absurd dimensions", route, body({"inputs": "x", "parameters": {"dimensions": 10**9}}),
         json_type),
        ("negative dimensions", route, body({"inputs": "x", "parameters": {"dimensions": -1}}),
         json_type),
        ("NaN parameter", route, b'{"inputs": "x", "parameters": {"dimensions": NaN}}',
         json_type),
        ("deep nesting", route, b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}", json_type),
        ("not JSON content type", route, b"inputs=x", {"Content-Type": "text/plain"}),
        ("empty body", route, b"", json_type),
        ("JSON null", route, b"null", json_type),
        ("OpenAI unknown encoding", "/v1/embeddings",
         body({"model": model, "input": "x", "encoding_format": "int4"}), json_type),
        ("OpenAI unknown model", "/v1/embeddings", body({"model": "gpt-9", "input": "x"}),
         json_type),
        ("TEI rerank without texts", "/rerank", body({"query": "q"}), json_type),
        ("TEI embed of a number", "/embed", body({"inputs": 3}), json_type),
    ]


def _names_the_error(body: object) -> bool:
    """Whether ``body`` is an error in its route's dialect: ours ``{"error", "error_type"}``,
    or OpenAI's ``{"error": {"message", "type", ...}}`` on the /v1 routes."""
    if not isinstance(body, dict) or "error" not in body:
        return False
    error = body["error"]
    if isinstance(error, dict):
        return {"message", "type"} <= set(error)
    return "error_type" in body


def send_bad_inputs(url: str, model: str) -> dict:
    """Send each of ``bad_inputs``; count clear 4xx JSON errors and 5xx, then ask /health."""
    results = []
    for what, path, data, headers in bad_inputs(model):
        request = urllib.request.Request(url + path, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, text = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read()
        except OSError as error:  # a reset or a refused connection: a failure here
            status, text = 0, repr(error).encode()
        try:
            parsed = json.loads(text)
            json_error = _names_the_error(parsed)
        except ValueError:
            json_error = False
        results.append({"what": what, "status": status, "json_error": json_error})
    with urllib.request.urlopen(url + "/health", timeout=60) as response:
        healthy = response.status == 200
    return {"tried": len(results),
            "clear_4xx": sum(1 for r in results if 400 <= r["status"] < 500 and r["json_error"]),
            "server_errors": sum(1 for r in results if r["status"] >= 500 or r["status"] == 0),
            "healthy_after": healthy, "cases": results}
