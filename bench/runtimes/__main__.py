"""``python -m bench.runtimes``: the true limit (``bench.runtimes.measure``) on this machine:
every runtime at every split of the cores, the int8 variants' accuracy, one report.
``python -m bench`` runs the same survey as its ``limit`` system.

Results go to ``--out`` as results.json and results.md.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from bench.project import ROOT
from bench.runtimes import measure, report

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def _options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.runtimes", description=__doc__)
    parser.add_argument("--model-dir", help="model directory (default: the embedded MiniLM)")
    parser.add_argument("--runtimes", default=",".join(measure.RUNTIMES),
                        help=f"comma-separated subset of {', '.join(measure.RUNTIMES)}")
    parser.add_argument("--splits", help="processes x threads per measurement, comma-"
                        "separated (default: every split of this machine's cores, e.g. 1x2,2x1)")
    parser.add_argument("--sizes", default="1,32", help="batch sizes (short texts)")
    parser.add_argument("--seconds", type=float, default=5, help="per measurement")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results-runtimes")
    return parser.parse_args()


def main() -> None:
    options = _options()
    from serving.models import resolve_model_source

    model_dir = options.model_dir or resolve_model_source(MINILM)
    splits = ([tuple(int(n) for n in split.split("x")) for split in options.splits.split(",")]
              if options.splits else measure.core_splits(os.cpu_count() or 1))
    run = measure.survey(model_dir, options.runtimes.split(","), splits,
                         [int(size) for size in options.sizes.split(",")], options.seconds,
                         progress=lambda line: print(line, flush=True))
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "results.json").write_text(json.dumps(run, indent=1))
    (options.out / "results.md").write_text(report.markdown(run))
    print(report.markdown(run))


if __name__ == "__main__":
    main()
