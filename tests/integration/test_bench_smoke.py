"""A seconds-long run of the benchmark harness (`python -m bench --smoke`): it checks that
every part runs and reports, not any speed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


PROJECT = ("project", "project-handle", "project-client", "project-in-ingress")
SMOKE_CELLS = (("single-mixed", 1), ("single-mixed", 4), ("batch32-short", 1))


@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk (make test installs it)")
def test_bench_smoke_run_reports_every_system(tmp_path, model_dirs):
    out = tmp_path / "bench"
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    systems = ("limit", "baseline", *PROJECT, "project-count", "project-proxy",
               "sentiment-baseline", "sentiment-project")
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--duration", "2", "--warmup", "1",
         "--systems", ",".join(systems), "--sentiment-model-dir", str(model_dirs["sst2"]),
         "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run = json.loads((out / "results.json").read_text())
    cells = {(r["system"], r["workload"], r["clients"]) for r in run["results"]}
    assert cells == {
        *((system, workload, clients) for system in ("baseline", *PROJECT, "project-proxy")
          for workload, clients in SMOKE_CELLS),
        ("project-count", "single-mixed", 1), ("project-count", "single-mixed", 4),
        *((system, "single-mixed", clients) for system in ("sentiment-baseline",
                                                          "sentiment-project")
          for clients in (1, 4)),
    }
    for record in run["results"]:
        assert record["requests"] > 0 and record["error_count"] == 0, record
        assert 0 < record["p50_ms"] <= record["p95_ms"] <= record["p99_ms"], record
        assert record["texts_s"] == pytest.approx(
            record["req_s"] * (32 if record["workload"].startswith("batch32") else 1))
        assert record["tokens_s"] > record["texts_s"]
    limit = run["limit"]["runtimes"]
    assert set(limit) == {"torch", "onnxruntime"}
    assert all(rate > 0 for runtime in limit.values() for rate in runtime["texts_per_s"].values())
    targets = {t["target"]: t for t in run["targets"]}
    assert len(targets) == 11  # every target is listed; smoke runs measure none at 64 clients
    table = (out / "results.md").read_text()
    assert "| target | wanted | measured | met | against |" in table
    assert "this project, HTTP (make serve)" in table and "True float32 limit" in table
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
