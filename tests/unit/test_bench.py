"""The benchmark harness's pure parts: workloads, option parsing, cells, targets."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.loadgen import wait_drained
from bench.plan import cells, parse_matrix, parse_variant
from bench.report import markdown, targets
from bench.systems import project_settings, with_model_settings
from bench.workloads import Workload, parse, texts


def test_workloads_are_deterministic_and_sized():
    assert texts("short", 8) == texts("short", 8)
    short, long = texts("short", 50), texts("long", 5)
    assert all(6 <= len(t.split()) <= 9 for t in short)
    assert all(100 <= len(t.split()) <= 115 for t in long)
    mixed = texts("mixed", 400)
    share = sum(len(t.split()) > 50 for t in mixed) / len(mixed)
    assert 0.05 < share < 0.15
    batches = Workload("mixed", 32).requests(4)
    assert len(batches) == 4 and all(len(b) == 32 for b in batches)
    assert parse("batch32-long") == Workload("long", 32) and parse("single-short").per_request == 1
    with pytest.raises(ValueError):
        parse("single-huge")


def test_variant_and_matrix_options():
    assert parse_variant("r2:num_replicas=2,num_cpus=0.5,length_buckets=false") == (
        "r2", {"num_replicas": 2, "num_cpus": 0.5, "length_buckets": False})
    assert parse_variant("int8:quantize=int8") == ("int8", {"quantize": "int8"})
    with pytest.raises(SystemExit):
        parse_variant("nothing")
    assert parse_matrix("single-short=1,64 batch32-short=16") == {
        "single-short": (1, 64), "batch32-short": (16,)}


def test_each_system_gets_its_cells():
    matrix = {"single-short": (1, 64), "single-mixed": (16,)}
    closed = [("single-short", "closed", 1), ("single-short", "closed", 64),
              ("single-mixed", "closed", 16)]
    assert cells("baseline", matrix, [50.0]) == [*closed, ("single-short", "open", 50.0)]
    assert cells("project-handle", matrix, [50.0]) == closed  # closed loop only
    assert cells("project-count", matrix, [50.0]) == [("single-mixed", "closed", 16)]


def test_project_systems_are_redeployed_with_their_settings():
    variants = {"int8": {"quantize": "int8"}}
    assert project_settings("project-count", variants) == {"length_buckets": False}
    assert project_settings("project-int8", variants) == {"quantize": "int8"}
    assert project_settings("project", variants) is None
    assert project_settings("project-handle", variants) is None
    args = {"models": [{"name": "a", "quantize": None}, {"name": "b"}], "x": 1}
    assert with_model_settings(args, quantize="int8") == {
        "models": [{"name": "a", "quantize": "int8"}, {"name": "b"}], "x": 1}
    assert args["models"][0]["quantize"] is None

def _record(system, workload, clients, req_s, p50=10.0, per_request=1):
    return {"system": system, "workload": workload, "mode": "closed", "clients": clients,
            "rate": None, "requests": 100, "req_s": req_s, "texts_s": req_s * per_request,
            "tokens_s": req_s * per_request * 10, "p50_ms": p50, "p95_ms": p50,
            "p99_ms": p50, "errors": {}, "error_count": 0, "loadgen_cpu_share": 0.01}


def test_targets_are_ratios_from_the_results():
    results = [
        _record("project", "single-short", 64, 300), _record("baseline", "single-short", 64, 90),
        _record("infinity", "single-short", 64, 160),
        _record("project", "single-short", 1, 30, p50=24), _record("baseline", "single-short",
                                                                   1, 50, p50=20),
        _record("project", "batch32-short", 16, 10, per_request=32),
        _record("project", "single-mixed", 64, 200), _record("project-count", "single-mixed",
                                                             64, 80),
    ]
    limits = [{"length": "short", "batch_size": 32, "texts_per_s": 400.0, "threads": 2}]
    found = {t["target"]: (round(t["measured"], 3), t["met"]) for t in targets(results, limits)}
    assert list(found.values()) == [(3.333, True), (1.875, False), (0.8, False), (1.2, True),
                                    (2.5, True)]
    run = {"started": "now", "machine": "test", "model": "m", "duration_s": 1,
           "limits": limits, "quantization": None, "results": results,
           "targets": targets(results, limits)}
    table = markdown(run)
    assert "| 1 client p50 latency vs plain baseline | <= 1.2 | 1.20× | **yes** |" in table


def test_the_report_gives_the_onnx_engine_speed_up_and_difference():
    onnx = {"torch_b1_texts_per_s": 50.0, "onnx_b1_texts_per_s": 125.0,
            "torch_b32_texts_per_s": 200.0, "onnx_b32_texts_per_s": 220.0,
            "max_abs_diff": 2.5e-7, "cosine_min": 0.9999999}
    run = {"started": "now", "machine": "test", "model": "m", "duration_s": 1, "limits": [],
           "quantization": None, "onnx": onnx, "results": [], "targets": targets([], [])}
    assert ("batch 1 50 → 125 texts/s (**2.50×**), batch 32 200 → 220 texts/s (**1.10×**); "
            "embeddings vs PyTorch: largest difference 2.5e-07") in markdown(run)


def test_unmeasured_targets_say_so():
    assert all(t["measured"] is None and t["met"] is None for t in targets([], []))


@pytest.fixture
def backlogged_server():
    """A server that refuses (503) its first ``refusals`` requests, as a busy one does, then
    answers each after ``delay_s``; it records the requests it got."""
    seen: list[str] = []
    plan = {"refusals": 2, "delay_s": 0.0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            seen.append(self.rfile.read(int(self.headers["Content-Length"])).decode())
            refused = len(seen) <= plan["refusals"]
            if not refused:
                time.sleep(plan["delay_s"])
            self.send_response(503 if refused else 200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", seen, plan
    server.shutdown()
    server.server_close()


def test_wait_drained_waits_through_refusals_for_an_answer(backlogged_server):
    url, seen, _ = backlogged_server
    waited = wait_drained(url, "/embed", '{"inputs": "x"}', timeout_s=10)
    assert seen == ['{"inputs": "x"}'] * 3  # two 503s, then the answer
    assert 2.0 <= waited < 5  # 1 s after each refusal


def test_wait_drained_wants_a_fast_answer_and_gives_up(backlogged_server):
    url, seen, plan = backlogged_server
    plan.update(refusals=0, delay_s=0.3)  # answered, but slower than asked: not drained
    assert wait_drained(url, "/embed", "{}", fast_s=0.2, timeout_s=1.8) is None
    assert len(seen) == 2  # one try a second until the timeout
    assert wait_drained(url, "/embed", "{}", fast_s=1.0, timeout_s=5) < 1
