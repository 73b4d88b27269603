"""Capacity on the local two-node cluster: requests/s of the real all-MiniLM-L6-v2 with one
and with two model replicas (both on the worker node, placed by custom resource), one
short text per request, `wrk` with 16 connections for 15 s against 127.0.0.1.

Slow (about 3 minutes on 2 cores): `pytest -m slow tests/cluster -s` prints the figures
that the "Capacity" section of docs/cluster.md quotes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import pytest
from cluster_helpers import (
    NodeSpec,
    deploy,
    free_port,
    local_cluster,
    replicas,
    wait_running,
    write_config,
)

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
DURATION_S, CONNECTIONS = 15, 16


def _args(num_replicas: int) -> dict:
    return {"models": [{
        "name": "minilm", "task": "feature-extraction", "model": MINILM, "max_batch_size": 32,
        "batch_wait_timeout_s": 0, "num_replicas": num_replicas, "num_cpus": 0.5,
        "tokenizer_num_cpus": 0.1, "resources": {"model_node": 1},
    }], "ingress": {"num_cpus": 0.1}}


def _wrk(url: str, directory) -> tuple[float, int]:
    """(requests/s, non-2xx + socket errors) of a ``wrk`` run posting one short text."""
    script = directory / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(json.dumps({'inputs': 'Ray Serve batches requests.'}))}\n")
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{DURATION_S}s", "-s", str(script), url],
        capture_output=True, text=True, timeout=DURATION_S + 30, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    errors += sum(map(int, socket_errors.groups())) if socket_errors else 0
    return rate, errors


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk (make wrk)")
def test_throughput_with_one_and_two_model_replicas(tmp_path):
    head, worker = NodeSpec(2, {"head_node": 4}), NodeSpec(2, {"model_node": 4})
    port = free_port()
    url = f"http://127.0.0.1:{port}/models/minilm"
    results = {}
    with local_cluster(head, [worker], env={"HF_HUB_OFFLINE": "1"}) as cluster:
        for count in (1, 2):
            deploy(cluster, write_config(tmp_path / f"r{count}.yaml", _args(count), port))
            wait_running(cluster)
            assert len(replicas(cluster, "minilm-model")) == count
            time.sleep(3)  # let the new replicas settle
            _wrk(url, tmp_path)  # warm-up (first batches, connection setup), not counted
            results[count] = _wrk(url, tmp_path)
    print(f"\n[capacity] MiniLM, one short text per request, {CONNECTIONS} connections, "
          f"{DURATION_S} s: 1 replica {results[1][0]:.1f} req/s, 2 replicas "
          f"{results[2][0]:.1f} req/s ({results[2][0] / results[1][0]:.2f}x)")
    assert all(rate > 0 and errors == 0 for rate, errors in results.values()), results
