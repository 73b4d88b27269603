"""``python -m bench.runtimes``: the true limit (``bench.runtimes.measure``) on this machine:
every runtime at every split of the cores, the int8 variants' accuracy, one report.

Results go to ``--out`` as results.json and results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from bench.project import ROOT
from bench.runtimes import measure as runtimes

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
# Recommend an int8 variant only this close to float32 (the performance issue's bar).
MIN_COSINE, MIN_AGREEMENT = 0.99, 0.95


def _options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.runtimes", description=__doc__)
    parser.add_argument("--model-dir", help="model directory (default: the embedded MiniLM)")
    parser.add_argument("--runtimes", default=",".join(runtimes.RUNTIMES),
                        help=f"comma-separated subset of {', '.join(runtimes.RUNTIMES)}")
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
    calibration, held_out = runtimes.docs_sentences()
    calibration = calibration[: runtimes.CALIBRATION_SENTENCES]
    cores = os.cpu_count() or 1
    splits = ([tuple(int(n) for n in split.split("x")) for split in options.splits.split(",")]
              if options.splits else
              [(processes, cores // processes) for processes in range(1, cores + 1)
               if cores % processes == 0])
    sizes = [int(size) for size in options.sizes.split(",")]
    names = options.runtimes.split(",")
    run: dict = {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "cores": os.cpu_count(), "model": model_dir, "seconds": options.seconds,
                 "calibration_sentences": len(calibration), "held_out": len(held_out),
                 "runtimes": {}}
    reference = runtimes.load("torch", model_dir, model_dir, 2)(held_out)
    with tempfile.TemporaryDirectory() as workdir:
        for name in names:
            began = time.perf_counter()
            artifact = runtimes.prepare(name, model_dir, Path(workdir), calibration)
            result = {"prepare_s": time.perf_counter() - began,
                      **runtimes.accuracy(runtimes.load(name, artifact, model_dir, 2),
                                          reference, held_out), "texts_per_s": {}}
            for processes, threads in splits:
                for size in sizes:
                    rate = runtimes.throughput(name, artifact, model_dir, processes, threads,
                                               size, options.seconds)
                    result["texts_per_s"][f"{processes}x{threads} b{size}"] = rate
                    print(f"{name} {processes}x{threads} batch {size}: {rate:.0f} texts/s",
                          flush=True)
            run["runtimes"][name] = result
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "results.json").write_text(json.dumps(run, indent=1))
    (options.out / "results.md").write_text(markdown(run, sizes))
    print(markdown(run, sizes))


def _best(result: dict, size: int) -> tuple[float, str]:
    rates = {key: rate for key, rate in result["texts_per_s"].items()
             if key.endswith(f" b{size}")}
    key = max(rates, key=rates.get)
    return rates[key], key.split()[0]


def recommended(result: dict) -> bool:
    return result["cosine_mean"] >= MIN_COSINE and result["neighbour_agreement"] >= MIN_AGREEMENT


def markdown(run: dict, sizes: list[int]) -> str:
    results = run["runtimes"]
    splits = sorted({key.split()[0] for r in results.values() for key in r["texts_per_s"]})
    lines = [f"Runtimes {run['started']}, {run['cores']} cores, {run['seconds']:g} s per "
             f"measurement; short texts; texts/s by processes x threads and batch size. "
             f"Accuracy on {run['held_out']} held-out sentences of the docs against PyTorch "
             f"float32 (int8 static: calibrated on {run['calibration_sentences']} others).",
             "", "| runtime | " + " | ".join(f"{s} b{b}" for b in sizes for s in splits)
             + " | cosine mean | cosine min | neighbours | convert s |",
             "|---" * (1 + len(sizes) * len(splits) + 4) + "|"]
    for name, r in results.items():
        rates = [r["texts_per_s"].get(f"{s} b{b}") for b in sizes for s in splits]
        lines.append(f"| {name} | " + " | ".join("–" if x is None else f"{x:.0f}" for x in rates)
                     + f" | {r['cosine_mean']:.4f} | {r['cosine_min']:.4f} | "
                     f"{r['neighbour_agreement']:.1%} | {r['prepare_s']:.1f} |")
    lines.append("")
    for size in sizes:
        floats = {n: _best(r, size) for n, r in results.items() if "int8" not in n}
        if floats:
            name = max(floats, key=lambda n: floats[n][0])
            lines.append(f"- **True float32 limit at batch {size}: {floats[name][0]:.0f} texts/s**"
                         f" ({name}, {floats[name][1]}).")
        good = {n: _best(r, size) for n, r in results.items()
                if "int8" in n and recommended(r)}
        if good:
            name = max(good, key=lambda n: good[n][0])
            lines.append(f"- Best int8 within cosine >= {MIN_COSINE} and neighbours >= "
                         f"{MIN_AGREEMENT:.0%} at batch {size}: {good[name][0]:.0f} texts/s "
                         f"({name}, {good[name][1]}).")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
