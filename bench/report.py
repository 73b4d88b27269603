"""Results → JSON, a Markdown table with the targets, and a PNG plot."""

from __future__ import annotations

import json
from pathlib import Path

from bench.runtimes import report as runtimes_report
from bench.systems import EMBED_PEERS

SYSTEM_NAMES = {
    "baseline": "plain FastAPI + pipeline()",
    "infinity": "Infinity, torch engine",
    "infinity-onnx": "Infinity, ONNX engine (optimum)",
    "st-onnx": "FastAPI + sentence-transformers ONNX + micro-batcher",
    "project": "this project, HTTP (make serve)",
    "project-handle": "this project, DeploymentHandle",
    "project-client": "this project, AppClient (merged handle calls)",
    "project-count": "this project, HTTP, count-only batching",
    "project-in-ingress": "this project, HTTP, model in the ingress (in_ingress: true)",
    "project-proxy": "this project, plain serve run (Python proxy)",
    "sentiment-baseline": "sentiment: plain FastAPI + pipeline()",
    "sentiment-infinity": "sentiment: Infinity, torch engine",
    "sentiment-project": "sentiment: this project, HTTP",
}


def find(results: list[dict], system: str, workload: str, clients: int) -> dict | None:
    return next((r for r in results if r["system"] == system and r["workload"] == workload
                 and r["mode"] == "closed" and r["clients"] == clients), None)


def targets(results: list[dict], limit: dict | None) -> list[dict]:
    """Each target of the performance issue with its measured ratio (None: not measured)
    and what it was measured against."""

    def short(system: str, clients: int) -> dict | None:
        return find(results, system, "single-short", clients)

    def ratio(a: dict | None, b: dict | None, key: str) -> float | None:
        return a[key] / b[key] if a and b and b[key] else None

    project64 = short("project", 64)
    peers = {p: r for p in EMBED_PEERS if (r := short(p, 64))}
    best_peer = max(peers, key=lambda p: peers[p]["req_s"], default=None)
    true = runtimes_report.best(limit) if limit else None
    true_limit = {"texts_s": true["texts_per_s"]} if true else None
    int8 = runtimes_report.best(limit, int8=True) if limit else None
    batch = find(results, "project", "batch32-short", 16)
    rows = [
        ("single short texts, 64 clients: req/s vs the best peer", ">= 2",
         ratio(project64, peers.get(best_peer), "req_s"), 2.0, True,
         SYSTEM_NAMES.get(best_peer, "no peer measured")),
        ("single short texts, 64 clients: texts/s vs the true float32 limit", ">= 0.8",
         ratio(project64, true_limit, "texts_s"), 0.8, True, _limit_name(true)),
        ("32-text requests, 16 clients, HTTP: texts/s vs the true float32 limit", ">= 0.9",
         ratio(batch, true_limit, "texts_s"), 0.9, True, _limit_name(true)),
        ("1 client p50 latency vs the plain baseline", "<= 1.0",
         ratio(short("project", 1), short("baseline", 1), "p50_ms"), 1.0, False,
         SYSTEM_NAMES["baseline"]),
        ("sentiment, 64 clients: req/s vs its plain baseline", ">= 3",
         ratio(short("sentiment-project", 64), short("sentiment-baseline", 64), "req_s"), 3.0,
         True, SYSTEM_NAMES["sentiment-baseline"]),
        ("a recommended int8 setting: throughput vs float32", ">= 1.6", None, 1.6, True,
         _int8_note(limit, int8)),
        ("AppClient (merged handle calls) vs HTTP, single short texts, 64 clients", ">= 0.9",
         ratio(short("project-client", 64), project64, "req_s"), 0.9, True,
         SYSTEM_NAMES["project"]),
        ("DeploymentHandle, a call per request, vs HTTP, single short texts, 64 clients",
         ">= 0.9", ratio(short("project-handle", 64), project64, "req_s"), 0.9, True,
         SYSTEM_NAMES["project"]),
        ("plain serve run vs make serve, single short texts, 64 clients", ">= 1.0",
         ratio(short("project-proxy", 64), project64, "req_s"), 1.0, True,
         SYSTEM_NAMES["project"]),
        ("single short texts, 64 clients: req/s vs the plain baseline", ">= 3",
         ratio(project64, short("baseline", 64), "req_s"), 3.0, True, SYSTEM_NAMES["baseline"]),
        ("mixed lengths at 64 clients, texts/s vs count-only batching", ">= 2",
         ratio(find(results, "project", "single-mixed", 64),
               find(results, "project-count", "single-mixed", 64), "texts_s"), 2.0, True,
         SYSTEM_NAMES["project-count"]),
    ]
    found = []
    for name, wanted, value, bound, higher, against in rows:
        met = None if value is None else (value >= bound if higher else value <= bound)
        if limit and int8 is None and name.startswith("a recommended int8"):
            met = False  # measured: no int8 variant is close enough to recommend
        found.append({"target": name, "wanted": wanted, "measured": value, "met": met,
                      "against": against})
    return found


def _limit_name(true: dict | None) -> str:
    if true is None:
        return "limit not measured"
    return (f"{true['texts_per_s']:.0f} texts/s: {true['runtime']}, batch {true['batch']}, "
            f"{true['split']} processes x threads")


def _int8_note(limit: dict | None, int8: dict | None) -> str:
    if limit is None:
        return "limit not measured"
    if int8 is None:
        return (f"no int8 variant reaches cosine >= {runtimes_report.MIN_COSINE} and "
                f"neighbours >= {runtimes_report.MIN_AGREEMENT:.0%}: none to recommend")
    return f"{int8['runtime']} passes the accuracy bar but is not served yet"


def markdown(run: dict) -> str:
    lines = [f"Benchmark run {run['started']} on {run['machine']}, model `{run['model']}`, "
             f"{run['duration_s']:g} s per cell.", ""]
    if run.get("limit"):
        lines += ["**The true limit**: the bare model (tokenize + forward + pooling, no "
                  "serving) in each runtime, at each split of the cores.", "",
                  runtimes_report.markdown(run["limit"])]
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
    lines += ["", "| target | wanted | measured | met | against |", "|---|---|---|---|---|"]
    for t in run["targets"]:
        measured = "not measured" if t["measured"] is None else f"{t['measured']:.2f}×"
        met = {None: "–", True: "**yes**", False: "no"}[t["met"]]
        lines.append(f"| {t['target']} | {t['wanted']} | {measured} | {met} | {t['against']} |")
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
    for size, style in ((32, "--"), (1, ":")):
        limit = runtimes_report.best(run["limit"], size) if run.get("limit") else None
        if limit and workload == "single-short":
            left.axhline(limit["texts_per_s"], linestyle=style, color="grey",
                         label=f"true limit at batch {size} ({limit['runtime']})")
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
