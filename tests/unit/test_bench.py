"""The benchmark harness's pure parts: workloads, option parsing, cells, targets."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.loadgen import wait_drained
from bench.plan import FULL, cells, parse_matrix, parse_variant
from bench.report import markdown, targets
from bench.systems import project_args, with_model_settings
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
    matrix = {"single-short": (1, 64), "single-mixed": (16,), "batch32-short": (16,)}
    closed = [("single-short", "closed", 1), ("single-short", "closed", 64),
              ("single-mixed", "closed", 16), ("batch32-short", "closed", 16)]
    assert cells("baseline", matrix, [50.0]) == [*closed, ("single-short", "open", 50.0)]
    assert cells("project-handle", matrix, [50.0]) == closed  # closed loop only
    assert cells("project-count", matrix, [50.0]) == [("single-mixed", "closed", 16)]
    assert cells("sentiment-baseline", matrix, [50.0]) == closed[:3]  # single texts only
    # The full matrix: the other ways in and the classifier where the targets are.
    ways_in = [("single-short", "closed", 1), ("single-short", "closed", 64),
               ("batch32-short", "closed", 16)]
    assert cells("project-proxy", FULL, [50.0]) == ways_in
    assert cells("sentiment-project", FULL, [50.0]) == ways_in[:2]


def test_project_systems_are_redeployed_with_their_settings():
    variants = {"int8": {"quantize": "int8"}}
    args = {"models": [{"name": "a", "quantize": None, "num_replicas": 2}, {"name": "b"}],
            "ingress": {"num_cpus": 0.5}}
    assert project_args("project-count", args, variants)["models"][0]["length_buckets"] is False
    assert project_args("project-int8", args, variants)["models"] == [
        {"name": "a", "quantize": "int8", "num_replicas": 2}, {"name": "b"}]
    assert project_args("project", args, variants) is None
    assert project_args("project-handle", args, variants) is None
    moved = project_args("project-in-ingress", args, variants)
    assert moved["models"][0] == {"name": "a", "quantize": None, "num_replicas": 1,
                                  "in_ingress": True}
    assert moved["ingress"] == {"num_cpus": 0.5, "num_replicas": 2}
    assert args["models"][0]["quantize"] is None and "in_ingress" not in args["models"][0]
    assert with_model_settings(args, quantize="int8")["models"][1] == {"name": "b"}


def _record(system, workload, clients, req_s, p50=10.0, per_request=1):
    return {"system": system, "workload": workload, "mode": "closed", "clients": clients,
            "rate": None, "requests": 100, "req_s": req_s, "texts_s": req_s * per_request,
            "tokens_s": req_s * per_request * 10, "p50_ms": p50, "p95_ms": p50,
            "p99_ms": p50, "errors": {}, "error_count": 0, "loadgen_cpu_share": 0.01}


def _survey(int8_agreement: float) -> dict:
    """A runtimes survey: float32 limits of 600 (batch 1) and 1000 (batch 32) texts/s."""
    def runtime(b1, b32, cosine=1.0, agreement=1.0):
        return {"texts_per_s": {"2x1 b1": b1, "2x1 b32": b32, "1x2 b32": b32 / 2},
                "cosine_mean": cosine, "cosine_min": cosine, "neighbour_agreement": agreement,
                "prepare_s": 0.1}
    return {"started": "now", "cores": 2, "model": "m", "seconds": 1,
            "calibration_sentences": 10, "held_out": 10,
            "runtimes": {"torch": runtime(300, 500), "onnxruntime": runtime(600, 900),
                         "openvino": runtime(400, 1000),
                         "openvino-int8-static": runtime(900, 3000, 0.997, int8_agreement)}}


def test_targets_are_ratios_from_the_results():
    results = [
        _record("project", "single-short", 64, 500), _record("baseline", "single-short", 64, 90),
        _record("infinity", "single-short", 64, 160), _record("st-onnx", "single-short", 64, 250),
        _record("project", "single-short", 1, 30, p50=24), _record("baseline", "single-short",
                                                                   1, 50, p50=20),
        _record("project", "batch32-short", 16, 30, per_request=32),
        _record("sentiment-project", "single-short", 64, 120),
        _record("sentiment-baseline", "single-short", 64, 30),
        _record("project-client", "single-short", 64, 450),
        _record("project-handle", "single-short", 64, 200),
        _record("project-proxy", "single-short", 64, 250),
        _record("project", "single-mixed", 64, 200), _record("project-count", "single-mixed",
                                                             64, 80),
    ]
    found = {t["target"]: t for t in targets(results, _survey(int8_agreement=0.93))}
    assert [(round(t["measured"], 3) if t["measured"] else None, t["met"])
            for t in found.values()] == [
        (2.0, True),  # the best peer: st-onnx's 250
        (0.5, False), (0.96, True),  # 500 and 960 texts/s against openvino's 1000
        (1.2, False), (4.0, True),
        (None, False),  # no int8 variant close enough to float32: none to recommend
        (0.9, True), (0.4, False), (0.5, False), (5.556, True), (2.5, True)]
    best_peer = found["single short texts, 64 clients: req/s vs the best peer"]
    assert best_peer["against"] == "FastAPI + sentence-transformers ONNX + micro-batcher"
    assert found["32-text requests, 16 clients, HTTP: texts/s vs the true float32 limit"][
        "against"] == "1000 texts/s: openvino, batch 32, 2x1 processes x threads"
    run = {"started": "now", "machine": "test", "model": "m", "duration_s": 1,
           "limit": _survey(0.93), "results": results,
           "targets": targets(results, _survey(0.93))}
    table = markdown(run)
    assert ("| 1 client p50 latency vs the plain baseline | <= 1.0 | 1.20× | no "
            "| plain FastAPI + pipeline() |") in table
    assert "**True float32 limit at batch 32: 1000 texts/s** (openvino, 2x1)" in table
    assert "none is recommended" in table


def test_an_int8_variant_close_enough_to_float32_is_named():
    found = {t["target"]: t for t in targets([], _survey(int8_agreement=0.96))}
    int8 = found["a recommended int8 setting: throughput vs float32"]
    assert int8["met"] is None and "openvino-int8-static" in int8["against"]


def test_unmeasured_targets_say_so():
    assert all(t["measured"] is None and t["met"] is None for t in targets([], None))


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
