"""``python -m bench``: the true limit, the peers and this project, one run.

Every system runs alone (one server at a time on the machine) against the same inputs;
results go to ``--out`` as results.json, results.md and results.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import infinity, loadgen, report, st_onnx
from bench.project import ROOT
from bench.runner import Bench
from bench.systems import SYSTEMS


def _options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma-separated subset of {', '.join(SYSTEMS)}")
    parser.add_argument("--duration", type=float, default=10, help="seconds per cell")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of warm-up per system")
    parser.add_argument("--rates", default="50,150",
                        help="open-loop arrival rates (req/s) of single-short requests")
    parser.add_argument("--model-dir", help="model directory (default: the embedded MiniLM)")
    parser.add_argument("--sentiment-model-dir", help="the sentiment systems' classifier "
                        "(default: a DistilBERT-base-size one with random weights, built into "
                        "bench/.sentiment-model/ on first use)")
    parser.add_argument("--config", type=Path, default=ROOT / "serve_config.yaml",
                        help="Serve config whose first app is benchmarked")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                        help="also measure the project with these model settings changed, "
                        "e.g. 'int8:quantize=int8' (reported as project-NAME; repeatable)")
    parser.add_argument("--matrix", help="workloads and client counts instead of the full "
                        "matrix, e.g. 'single-short=1,64 batch32-short=16'")
    parser.add_argument("--smoke", action="store_true",
                        help="a seconds-long run of a tiny matrix: checks the harness only")
    return parser.parse_args()


def main() -> None:
    """Run the benchmark the options describe, write its report and print the table.

    Raises:
        SystemExit: ``wrk`` is missing, an option is wrong, or a system failed.
    """
    options = _options()
    if not loadgen.have_wrk():
        raise SystemExit("the benchmark needs `wrk` (Debian: apt-get install wrk)")
    bench = Bench(options)
    if any("infinity" in system for system in bench.systems):
        infinity.ensure_installed()
    if "st-onnx" in bench.systems:
        st_onnx.ensure_installed()
    run = bench.run()
    for path in report.write(run, options.out):
        print(path)
    print(report.markdown(run))
    if run["failures"]:
        raise SystemExit("failed: " + "; ".join(run["failures"]))


if __name__ == "__main__":
    main()
