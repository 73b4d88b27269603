"""A seconds-long run of the reliability report (`python -m bench.reliability --smoke`):
every scenario runs against the default app and nothing is lost."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk (make test installs it)")
def test_reliability_smoke_run_loses_nothing(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    result = subprocess.run(
        [sys.executable, "-m", "bench.reliability", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=540,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run = json.loads((tmp_path / "reliability.json").read_text())
    assert run["capacity"]["req_s"] > 0 and not run["capacity"]["errors"]
    assert [over["factor"] for over in run["overload"]] == [2]
    assert all(over["drained_s"] is not None for over in run["overload"])  # backlog gone
    for scenario in (*run["overload"], *run["faults"]):
        assert scenario["sent"] > 0
        assert scenario["sent"] == (scenario["answered"] + scenario["refused"]
                                    + scenario["other_status"] + scenario["lost"]), scenario
        assert scenario["lost"] == scenario["hung"] == scenario["connection_errors"] == 0
    assert {fault["deployment"] for fault in run["faults"]} == {"minilm-model",
                                                                 "minilm-tokenizer"}
    for fault in run["faults"]:
        assert fault["replaced_s"] is not None, fault
    model_fault = run["faults"][0]  # two model replicas: the other one answers meanwhile
    assert model_fault["answered"] == model_fault["sent"], model_fault
    bad = run["bad_input"]
    assert bad["clear_4xx"] == bad["tried"] >= 25 and bad["server_errors"] == 0, bad["cases"]
    assert bad["healthy_after"]
    table = (tmp_path / "reliability.md").read_text()
    assert "| requests lost (no answer at all) | all scenarios | **0** |" in table
