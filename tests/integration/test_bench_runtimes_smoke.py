"""A seconds-long run of the runtimes survey (`python -m bench.runtimes`) on a tiny encoder:
every runtime family converts, loads in its own processes and reports, and the float32
ones give PyTorch's embeddings. Not a speed check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIMES = ("torch", "onnxruntime", "onnxruntime-int8-dynamic", "openvino",
            "openvino-int8-static")


def test_runtimes_survey_reports_every_runtime(tmp_path, model_dirs):
    out = tmp_path / "runtimes"
    result = subprocess.run(
        [sys.executable, "-m", "bench.runtimes", "--model-dir", str(model_dirs["st"]),
         "--runtimes", ",".join(RUNTIMES), "--splits", "1x1,2x1", "--sizes", "1,4",
         "--seconds", "0.5", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=540,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run = json.loads((out / "results.json").read_text())
    assert list(run["runtimes"]) == list(RUNTIMES)
    for name, measured in run["runtimes"].items():
        assert set(measured["texts_per_s"]) == {"1x1 b1", "1x1 b4", "2x1 b1", "2x1 b4"}
        assert all(rate > 0 for rate in measured["texts_per_s"].values()), name
        if "int8" not in name:  # the same model in float32: the same embeddings
            assert measured["cosine_min"] > 0.9999, (name, measured)
            # Nearest neighbours among a tiny random model's vectors can tie to 1e-7; one
            # tie broken the other way (1 of 178) is float noise, not another model.
            assert measured["neighbour_agreement"] >= 0.99, (name, measured)
    assert run["calibration_sentences"] > 50 and run["held_out"] > 50
    table = (out / "results.md").read_text()
    assert "True float32 limit at batch 1" in table
    assert all(f"| {name} |" in table for name in RUNTIMES)
