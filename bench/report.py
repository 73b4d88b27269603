"""Results → JSON, a Markdown table with the targets, and a PNG plot."""

from __future__ import annotations

import json
from pathlib import Path

SYSTEM_NAMES = {
    "baseline": "plain FastAPI + pipeline()",
    "infinity": "Infinity (infinity-emb)",
    "project": "this project, HTTP",
    "project-handle": "this project, DeploymentHandle",
    "project-count": "this project, HTTP, count-only batching",
}


def find(results: list[dict], system: str, workload: str, clients: int) -> dict | None:
    return next((r for r in results if r["system"] == system and r["workload"] == workload
                 and r["mode"] == "closed" and r["clients"] == clients), None)


def targets(results: list[dict], limits: list[dict]) -> list[dict]:
    """Each target of the performance issue with its measured ratio (None: not measured)."""

    def ratio(a: dict | None, b: dict | None, key: str) -> float | None:
        return a[key] / b[key] if a and b and b[key] else None

    project64 = find(results, "project", "single-short", 64)
    short_limit = next((limit for limit in limits if limit["length"] == "short"), None)
    batch = find(results, "project", "batch32-short", 16)
    rows = [
        ("single-text req/s at 64 clients vs plain baseline", ">= 3",
         ratio(project64, find(results, "baseline", "single-short", 64), "req_s"), 3.0, True),
        ("single-text req/s at 64 clients vs Infinity", ">= 2",
         ratio(project64, find(results, "infinity", "single-short", 64), "req_s"), 2.0, True),
        ("32-text requests at 16 clients, texts/s vs the limit", ">= 0.9",
         batch["texts_s"] / short_limit["texts_per_s"] if batch and short_limit else None,
         0.9, True),
        ("1 client p50 latency vs plain baseline", "<= 1.2",
         ratio(find(results, "project", "single-short", 1),
               find(results, "baseline", "single-short", 1), "p50_ms"), 1.2, False),
        ("mixed lengths at 64 clients, texts/s vs count-only batching", ">= 2",
         ratio(find(results, "project", "single-mixed", 64),
               find(results, "project-count", "single-mixed", 64), "texts_s"), 2.0, True),
    ]
    return [{"target": name, "wanted": wanted, "measured": value,
             "met": None if value is None else (value >= bound if higher else value <= bound)}
            for name, wanted, value, bound, higher in rows]


def markdown(run: dict) -> str:
    lines = [f"Benchmark run {run['started']} on {run['machine']}, model `{run['model']}`, "
             f"{run['duration_s']:g} s per cell.", ""]
    if run["limits"]:
        lines += ["**The limit** (tokenize + forward in one process, no serving, "
                  f"{run['limits'][0]['threads']} torch threads):", "",
                  "| texts | best batch | texts/s |", "|---|---|---|"]
        lines += [f"| {limit['length']} | {limit['batch_size']} | {limit['texts_per_s']:.0f} |"
                  for limit in run["limits"]]
        lines.append("")
    q = run.get("quantization")
    if q:
        lines += [f"**int8 dynamic quantization** (`quantize: int8`), bare model, batch 32: "
                  f"{q['float32_texts_per_s']:.0f} → {q['int8_texts_per_s']:.0f} texts/s "
                  f"(**{q['speedup']:.2f}×**); embeddings vs float32: cosine mean "
                  f"{q['cosine_mean']:.4f}, min {q['cosine_min']:.4f}; nearest-neighbour "
                  f"agreement {q['nearest_neighbour_agreement']:.1%}.", ""]
    o = run.get("onnx")
    if o:
        lines += [f"**ONNX Runtime engine** (`engine: onnx`), bare model, short texts: batch 1 "
                  f"{o['torch_b1_texts_per_s']:.0f} → {o['onnx_b1_texts_per_s']:.0f} texts/s "
                  f"(**{o['onnx_b1_texts_per_s'] / o['torch_b1_texts_per_s']:.2f}×**), batch 32 "
                  f"{o['torch_b32_texts_per_s']:.0f} → {o['onnx_b32_texts_per_s']:.0f} texts/s "
                  f"(**{o['onnx_b32_texts_per_s'] / o['torch_b32_texts_per_s']:.2f}×**); "
                  f"embeddings vs PyTorch: largest difference {o['max_abs_diff']:.1e}, "
                  f"cosine min {o['cosine_min']:.6f}.", ""]
    lines += ["| workload | load | system | req/s | texts/s | tokens/s | p50 ms | p95 ms "
              "| p99 ms | errors | load-gen CPU |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(run["results"], key=lambda r: (r["workload"], r["mode"], r["clients"] or 0,
                                                   r["rate"] or 0, r["system"])):
        load = f"{r['clients']} clients" if r["mode"] == "closed" else f"{r['rate']:g} req/s open"
        lines.append(
            f"| {r['workload']} | {load} | {SYSTEM_NAMES.get(r['system'], r['system'])} "
            f"| {r['req_s']:.1f} | {r['texts_s']:.0f} | {r['tokens_s']:.0f} | {r['p50_ms']:.1f} "
            f"| {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['error_count']} "
            f"| {r['loadgen_cpu_share']:.0%} |")
    lines += ["", "| target | wanted | measured | met |", "|---|---|---|---|"]
    for t in run["targets"]:
        measured = "not measured" if t["measured"] is None else f"{t['measured']:.2f}×"
        met = {None: "–", True: "**yes**", False: "no"}[t["met"]]
        lines.append(f"| {t['target']} | {t['wanted']} | {measured} | {met} |")
    return "\n".join(lines) + "\n"


def plot(run: dict, path: Path, workload: str = "single-short") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    systems = list(SYSTEM_NAMES) + sorted({r["system"] for r in run["results"]} - set(SYSTEM_NAMES))
    for system in systems:
        points = sorted((r["clients"], r["req_s"], r["p99_ms"]) for r in run["results"]
                        if r["system"] == system and r["workload"] == workload
                        and r["mode"] == "closed")
        if len(points) < 2:
            continue
        clients, rps, p99 = zip(*points, strict=True)
        label = SYSTEM_NAMES.get(system, system)
        left.plot(clients, rps, marker="o", label=label)
        right.plot(clients, p99, marker="o", label=label)
    limit = next((x for x in run["limits"] if x["length"] == workload.split("-")[1]), None)
    if limit:
        left.axhline(limit["texts_per_s"], linestyle="--", color="grey",
                     label=f"limit (bare model, batch {limit['batch_size']})")
    for axis, title in ((left, "throughput (req/s)"), (right, "p99 latency (ms)")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent clients")
        axis.set_title(title)
        axis.grid(alpha=0.3)
    right.set_yscale("log")
    left.legend(fontsize=8)
    figure.suptitle(f"{workload}: one text per request, {run['model']}, {run['machine']}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(run: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.json", out / "results.md", out / "results.png"]
    paths[0].write_text(json.dumps(run, indent=1))
    paths[1].write_text(markdown(run))
    plot(run, paths[2])
    return paths
