"""``python -m bench.pools``: one model pool of many MiniLM-L6 classifiers against the same
models served one by one, on this machine.

Every system's model replicas run as the config's first model does (engine, replicas,
CPUs, threads, batching; separate models: one replica each). Systems, each deployed alone
(in place of the previous one, measured once that one's model replicas have stopped) on a
local Ray in HAProxy mode, as ``make serve`` runs it, warmed, then loaded by wrk with 64
clients sending one short text per request, each to a member drawn from Zipf(s=1.1) over
the members (one fixed sequence):
1. pool: the pool's replicas holding every member between them; each member's first
   request on the fresh idle replicas times its cold load; pool-m00: the same replicas, all
   traffic to ``m00``;
2. pool-churn: the same pool holding ``--max-models`` members per replica: loads and unloads
   during the run, then cold loads of evicted members on the idle replicas;
3. single: the most requested member as an ordinary single model (all traffic to it), the
   denominator of the warm-throughput target; single-colocated: the same, tokenizing in its
   replica as pool replicas do;
4. separate: up to ``--separate`` members as separate single models, as many as fit memory.
Results go to ``--out`` as results.json and results.md (systems, cold loads, targets).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bench import loadgen
from bench.pools import report
from bench.pools.models import build_classifiers
from bench.pools.run import PoolBench
from bench.pools.systems import Shape
from bench.project import ROOT

# max_models 1: the smoke pool's replicas (serve_config.yaml's two) hold fewer than its 4.
SMOKE = {"members": 4, "duration": 2, "warmup": 1, "max_models": 1, "separate": 2, "cold": 2}


def _options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.pools", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=15, help="seconds per system")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of warm-up load")
    parser.add_argument("--members", type=int, default=50, help="models in the pool")
    parser.add_argument("--max-models", type=int, default=16,
                        help="max_models_per_replica of the pool-churn system")
    parser.add_argument("--separate", type=int, default=10,
                        help="most members served as separate single models")
    parser.add_argument("--cold", type=int, default=5,
                        help="evicted members loaded again on the idle pool-churn replica")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "bench" / ".pool-models",
                        help="where the classifiers are built (reused): <dir>/<members>/m00...")
    parser.add_argument("--config", type=Path, default=ROOT / "serve_config.yaml",
                        help="Serve config whose first model gives the CPUs and batching")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results-pools",
                        help="where results.json and results.md go")
    parser.add_argument("--engine", choices=("torch", "onnx"),
                        help="every system's engine (default: the config's first model's)")
    parser.add_argument("--smoke", action="store_true",
                        help="a seconds-long run with 4 members: checks the harness only")
    options = parser.parse_args()
    if options.smoke:
        vars(options).update(SMOKE)
    if options.members < 2:
        parser.error("--members: at least 2")
    return options


def main() -> None:
    """Build (or reuse) the models, measure every system, write and print the report.

    Raises:
        SystemExit: ``wrk`` is missing, or a system failed.
    """
    options = _options()
    if options.smoke:  # its waits for the replicas' metrics: 1 s instead of Ray's 10 s
        os.environ.setdefault("RAY_metrics_report_interval_ms", "1000")
    if not loadgen.have_wrk():
        raise SystemExit("the benchmark needs `wrk` (make wrk, or apt-get install wrk)")
    # One directory per member count: a pool serves every model in its directory.
    directory = build_classifiers(options.models_dir / str(options.members), options.members)
    run = PoolBench(options, directory, Shape.of_app(options.config, options.engine)).run()
    run["targets"] = report.targets(run)
    for path in report.write(run, options.out):
        print(path)
    print(report.markdown(run))
    if run["failures"]:
        raise SystemExit("failed: " + "; ".join(run["failures"]))


if __name__ == "__main__":
    main()
