"""The reliability report's pure parts: the table, the files, finding replica processes."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from bench.reliability import replica_pids
from bench.reliability.replicas import MemorySampler
from bench.reliability.report import markdown, write
from bench.reliability.scenarios import bad_inputs, bodies


def _outcome(**changes) -> dict:
    outcome = {"sent": 100, "answered": 80, "refused": 15, "other_status": 3, "lost": 2,
               "refused_by_status": {429: 10, 503: 5}, "retry_after": ["1"],
               "answered_p99_ms": 120.0, "refused_p50_ms": 2.0, "refused_p99_ms": 9.0}
    return {**outcome, **changes}


RUN = {
    "capacity": {"clients": 64, "req_s": 123.4},
    "overload": [_outcome(offered_req_s=246.8, factor=2.0, duration_s=20.0, answered_req_s=100.0,
                          drained_s=3.2, memory_mb={"before": 1000, "peak": 1200, "after": 1010}),
                 _outcome(offered_req_s=493.6, factor=4.0, duration_s=20.0, answered_req_s=90.0,
                          drained_s=None, retry_after=[], refused_by_status={429: 15, 503: 0},
                          memory_mb={"before": 1000, "peak": 1300, "after": 1010})],
    "faults": [_outcome(deployment="m-model", replicas=2, rate=41.0, duration_s=40.0,
                        replaced_s=5.54),
               _outcome(deployment="m-tokenizer", replicas=2, rate=41.0, duration_s=40.0,
                        replaced_s=None)],
    "bad_input": {"tried": 28, "clear_4xx": 27, "server_errors": 1, "healthy_after": False},
}


def test_the_table_has_a_row_a_scenario_and_the_requests_lost():
    lines = markdown(RUN).splitlines()
    assert lines[:3] == ["| scenario | load | result |", "|---|---|---|",
                         "| capacity | closed loop, 64 clients, one short text | **123 req/s** |"]
    assert lines[3] == (
        "| overload | 247 req/s offered (2× capacity) for 20 s | sent 100 = answered 80 + "
        "refused 15 (429: 10, 503: 5, Retry-After 1) + other 3 + lost 2; load held "
        "**100 req/s**; answered p99 120 ms; refused p50 2 ms, p99 9 ms; replica memory 1000 → "
        "peak 1200 → 1010 MB; a lone request answered within 1 s again 3 s later |")
    assert "(429: 15, Retry-After -)" in lines[4] and lines[4].endswith("never drained |")
    assert lines[5] == ("| SIGKILL a `m-model` replica (1 of 2) | 41 req/s for 40 s | failed 20 "
                        "of 100 (3 error answers, 2 lost); replaced in 5.5 s |")
    assert lines[6].endswith("replaced in not replaced |")
    assert lines[7] == ("| bad input | 28 kinds of malformed or absurd requests | 27 clear 4xx "
                        "JSON errors, 1 5xx; /health NOT 200 afterwards |")
    assert lines[8] == "| requests lost (no answer at all) | all scenarios | **8** |"


def test_write_saves_the_run_and_the_table(tmp_path):
    table = write(RUN, tmp_path / "out")
    assert (tmp_path / "out" / "reliability.md").read_text() == table == markdown(RUN)
    assert json.loads((tmp_path / "out" / "reliability.json").read_text()) == json.loads(
        json.dumps(RUN))


def test_requests_are_short_texts_on_the_model_route():
    path, requests = bodies("m")
    assert path == "/models/m" and len(requests) == 256
    assert all(isinstance(json.loads(body)["inputs"], str) for body in requests)
    cases = bad_inputs("m")
    assert len({what for what, *_ in cases}) == len(cases)
    assert all(isinstance(body, bytes) for _, _, body, _ in cases)


@pytest.fixture
def titled_processes():
    """Processes titled as Ray titles the replicas of app ``bench-test``."""
    titles = ("ray::ServeReplica:bench-test:m-model", "ray::ServeReplica:bench-test:m-model.1",
              "ray::ServeReplica:bench-test:m-tokenizer")
    processes = [subprocess.Popen([title, "30"], executable="/bin/sleep") for title in titles]
    time.sleep(0.2)
    yield [process.pid for process in processes]
    for process in processes:
        process.kill()
        process.wait()


def test_replicas_are_found_by_their_titles(titled_processes):
    model, model_1, tokenizer = titled_processes
    assert sorted(replica_pids("bench-test")) == sorted(titled_processes)
    assert sorted(replica_pids("bench-test", "m-model")) == sorted([model, model_1])
    assert replica_pids("bench-test", "m-tokenizer") == [tokenizer]
    assert replica_pids("bench-test", "m") == []
    assert MemorySampler("bench-test").now_mb() > 0
