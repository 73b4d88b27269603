"""The generation benchmark's results: the targets at 16 clients, JSON written under
``bench/report/generation/`` (timestamped) and a Markdown table
(``python -m bench.generation.report <results.json>`` prints it again)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

TARGET_CLIENTS = 16
TARGETS = (  # (what, system, against, key, bound, higher is better)
    ("tokens/s vs project-static", "project-continuous", "project-static", "tokens_s", 2.0,
     True),
    ("TTFT p50 vs project-static", "project-continuous", "project-static", "ttft_p50_ms", 0.5,
     False),
    ("tokens/s vs transformers-serve", "project-continuous", "transformers-serve",
     "tokens_s", 1.0, True),
)


def find(results: list[dict], system: str, clients: int) -> dict | None:
    return next((r for r in results if r["system"] == system and r["clients"] == clients),
                None)


def targets(results: list[dict]) -> list[dict[str, Any]]:
    """Each target with its measured ratio at ``TARGET_CLIENTS`` clients (None: a side was
    not measured) and whether it is met."""
    rows = []
    for what, system, against, key, bound, higher in TARGETS:
        mine, theirs = find(results, system, TARGET_CLIENTS), find(results, against,
                                                                    TARGET_CLIENTS)
        ratio = (mine[key] / theirs[key] if mine and theirs and mine[key] is not None
                 and theirs[key] else None)
        met = None if ratio is None else (ratio >= bound if higher else ratio <= bound)
        rows.append({"target": f"{system} {what}", "bound": f"{'>=' if higher else '<='} "
                     f"{bound:g}x", "ratio": ratio, "met": met})
    return rows


def write(run: dict[str, Any], out: Path) -> list[Path]:
    """``<out>/<UTC time>.json`` and ``.md``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    stem = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    json_path.write_text(json.dumps(run, indent=1) + "\n")
    md_path.write_text(markdown(run) + "\n")
    return [json_path, md_path]


def markdown(run: dict[str, Any]) -> str:
    """The run's table (every system at every concurrency) and its targets."""
    lines = [
        f"Generation benchmark, {run['started']}: {run['model']['description']}; "
        f"{run['machine']['cpus']} CPUs, load average at start "
        f"{run['machine']['loadavg_at_start'][0]:.1f}; {run['plan']['warmup_s']:g} s warm-up "
        f"+ {run['plan']['duration_s']:g} s measured per point.",
        "",
        "| system | clients | output tokens/s | TTFT p50 | TTFT p99 | latency p50 | "
        "requests | errors | cut | length != max_tokens |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in run["results"]:
        lines.append(
            f"| {r['system']} | {r['clients']} | {r['tokens_s']:.1f} | {_ms(r['ttft_p50_ms'])} "
            f"| {_ms(r['ttft_p99_ms'])} | {_ms(r['latency_p50_ms'])} | {r['requests']} | "
            f"{sum(r['errors'].values())} | {r['cut']} | {r['length_mismatches']} |")
    lines += ["", "Requests: sent inside the window (TTFT and latency are theirs); cut: still "
              "streaming when the drain ended (not an error: a long answer)."]
    lines += ["", f"Targets at {TARGET_CLIENTS} clients:", "",
              "| target | bound | measured | met |", "|---|---:|---:|---|"]
    for t in run["targets"]:
        ratio = "not measured" if t["ratio"] is None else f"{t['ratio']:.2f}x"
        met = "-" if t["met"] is None else ("yes" if t["met"] else f"no ({ratio})")
        lines.append(f"| {t['target']} | {t['bound']} | {ratio} | {met} |")
    if run["failures"]:
        lines += ["", "Failures:", *(f"- {f.splitlines()[0]}" for f in run["failures"])]
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.generation.report",
                                     description="Print a results file's Markdown table.")
    parser.add_argument("results", type=Path)
    print(markdown(json.loads(parser.parse_args().results.read_text())))


if __name__ == "__main__":
    main()
