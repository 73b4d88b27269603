"""The four-model config a new user writes, default settings, on a 2-CPU Ray instance:
the deploy fails at once naming the replicas that cannot be placed, instead of waiting
forever with them pending; sized down, it is served."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import tiny_models

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import json, sys, time
    import ray
    from ray import serve
    from graphs.app import build_app
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    for args in json.loads(sys.argv[1]):
        started = time.monotonic()
        try:
            serve.run(build_app(args), name="fits", route_prefix="/")
            print(json.dumps({"ok": True, "s": time.monotonic() - started}))
        except ValueError as error:
            print(json.dumps({"ok": False, "s": time.monotonic() - started,
                              "error": str(error)}))
    serve.shutdown()
    ray.shutdown()
""")


def test_four_default_models_on_two_cpus_fail_at_once_and_fit_sized_down(tmp_path):
    configs = [tiny_models.four_model_app(tmp_path),
               tiny_models.four_model_app(tmp_path, num_cpus=0.25)]
    result = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(configs)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600,
                            env={**__import__("os").environ, "RAY_ADDRESS": "local"})
    assert result.returncode == 0, result.stderr[-3000:]
    default, sized = [json.loads(line) for line in result.stdout.splitlines()
                      if line.startswith("{")]
    assert not default["ok"] and default["s"] < 5, default
    assert "does not fit the Ray cluster" in default["error"]
    assert "gpt2-generator needs 1 CPU per replica" in default["error"]
    assert "the cluster has 2 CPU" in default["error"]
    assert sized["ok"], sized
