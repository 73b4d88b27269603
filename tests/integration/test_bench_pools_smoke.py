"""A seconds-long run of the model-pool benchmark (`python -m bench.pools --smoke`: four
MiniLM-L6 classifiers): it checks that every system runs and reports, not any speed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEMS = ("pool", "pool-m00", "pool-churn", "single", "single-colocated", "separate")


@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk (make test installs it)")
def test_bench_pools_smoke_run_reports_every_system(tmp_path):
    out = tmp_path / "bench"
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    result = subprocess.run(
        [sys.executable, "-m", "bench.pools", "--smoke", "--models-dir",
         str(tmp_path / "models"), "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=540,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert sorted(path.name for path in (tmp_path / "models" / "4").iterdir()) == [
        "m00", "m01", "m02", "m03"]
    run = json.loads((out / "results.json").read_text())
    assert [record["system"] for record in run["results"]] == list(SYSTEMS)
    for record in run["results"]:
        assert record["requests"] > 0 and record["error_count"] == 0, record
        assert 0 < record["p50_ms"] <= record["p95_ms"] <= record["p99_ms"], record
        assert record["memory"]["replicas"] >= 1 and record["memory"]["rss_mb"] > 0, record
    records = {record["system"]: record for record in run["results"]}
    assert records["pool"]["served"] == 4 and records["pool"]["failed_first"] == 0
    assert records["pool-churn"]["max_models"] == 1 and records["pool-churn"]["loads"] > 0
    replicas = run["shape"]["num_replicas"]  # serve_config.yaml's first model's
    assert records["pool"]["memory"]["replicas"] == replicas
    assert records["single"]["memory"]["replicas"] == replicas + 1  # and the tokenizer
    if run["shape"]["engine"] == "onnx":  # every member switched before the measurement
        assert records["pool"]["exports_awaited_s"] >= 0
    assert records["separate"]["memory"]["replicas"] == records["separate"]["served"] == 2
    first = run["cold_loads"]["first_loads"]
    assert [sample["member"] for sample in first] == ["m00", "m01", "m02", "m03"]
    reloads = run["cold_loads"]["reloads"]
    assert len(reloads) == 2
    assert all(sample["status"] == 200 and sample["cold_s"] > 0
               for sample in first + reloads), first + reloads
    assert all(sample["replica"] for sample in first), first
    assert [t["met"] is not None for t in run["targets"]] == [True, True, True]
    table = (out / "results.md").read_text()
    assert "| target | wanted | measured | met |" in table
    assert all(f"| {system} |" in table for system in SYSTEMS)
