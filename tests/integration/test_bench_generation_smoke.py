"""A seconds-long run of the generation benchmark (``python -m bench.generation --quick``: a
2-layer GPT-2 decoder built into a temp dir): every system at every client count streams
tokens and the report holds them; it checks the harness, not any speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.generation.systems import SYSTEMS, transformers_available

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = (1, 16, 64)


def test_bench_generation_quick_run_reports_every_system(tmp_path):
    peer = transformers_available()
    systems = SYSTEMS if peer else tuple(s for s in SYSTEMS if s != "transformers-serve")
    out = tmp_path / "report"
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    result = subprocess.run(
        [sys.executable, "-m", "bench.generation", "--quick", "--systems", ",".join(systems),
         "--models-dir", str(tmp_path / "models"), "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=420,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (results_file,) = out.glob("*.json")
    run = json.loads(results_file.read_text())
    assert run["failures"] == []
    assert [(r["system"], r["clients"]) for r in run["results"]] == [
        (system, clients) for system in systems for clients in CLIENTS]
    for record in run["results"]:
        assert record["tokens_s"] > 0 and record["completed"] > 0, record
        assert record["ttft_p50_ms"] is not None and record["ttft_p50_ms"] > 0, record
        # EOS is never generated: every answer is exactly max_tokens long.
        assert record["length_mismatches"] == 0, record
    assert run["results"][0]["route"] in ("openai", "tgi")
    table = results_file.with_suffix(".md").read_text()
    assert all(f"| {system} |" in table for system in systems)
    assert [t["met"] is not None for t in run["targets"]] == [True, True, peer]
    if not peer:
        pytest.skip("transformers-serve not measured: the `transformers serve` command or "
                    "its fastapi/uvicorn extras are not installed")
