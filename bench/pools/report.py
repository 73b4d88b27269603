"""The pool benchmark's run → results.json and results.md: the systems, the cold loads, and
the targets of the model-pool issue."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from bench.pools.systems import SEPARATE_NUM_CPUS

WARM_RATIO = 0.8  # pool vs single-model app, req/s at 64 clients
COLD_LOAD_S = 1.0


def find(run: dict, system: str) -> dict | None:
    return next((r for r in run["results"] if r["system"] == system), None)


def summary(samples: list[float]) -> dict[str, float] | None:
    """Count, median, 90th percentile and largest of ``samples``; None without any."""
    if not samples:
        return None
    ordered = sorted(samples)
    return {"count": len(ordered), "median": statistics.median(ordered),
            "p90": ordered[round(0.9 * (len(ordered) - 1))], "max": ordered[-1]}


def cold_summaries(run: dict) -> dict[str, dict | None]:
    """Cold-load summaries (seconds): ``first`` (the latency a member's first request on a
    fresh pool replica adds to a warm one; each replica's very first load left out, as it
    pays one-time costs: ``very_first``), ``reloads`` (the same for members the churn run
    evicted, on the idle replicas)."""
    first, replicas_seen, very_first = run["cold_loads"].get("first_loads", []), set(), []
    for sample in first:
        if sample.get("replica") not in replicas_seen:
            replicas_seen.add(sample.get("replica"))
            very_first.append(sample)
    ok = [sample for sample in first if sample["status"] == 200 and sample not in very_first]
    reloads = [sample for sample in run["cold_loads"].get("reloads", [])
               if sample["status"] == 200]

    return {"first": summary([sample["extra_s"] for sample in ok]),
            "very_first": summary([sample["extra_s"] for sample in very_first]),
            "reloads": summary([sample["extra_s"] for sample in reloads])}


def targets(run: dict) -> list[dict]:
    """Each target of the issue: wanted, measured (text), met (None: not measured)."""
    pool, single = find(run, "pool"), find(run, "single")
    members = run["members"]
    rows = []
    if pool:
        served = pool["served"] == members and pool["failed_first"] == 0
        rows.append((f"all {members} members served by one pool on this machine",
                     f"{members} of {members}",
                     f"{pool['served']} of {members} held at once, "
                     f"{members - pool['failed_first']} answered; RSS of its "
                     f"{pool['memory']['replicas']} replica(s) "
                     f"{pool['memory']['rss_mb'] / 1024:.1f} GB", served))
    else:
        rows.append((f"all {members} members served by one pool on this machine",
                     f"{members} of {members}", None, None))
    ratio = pool["req_s"] / single["req_s"] if pool and single and single["req_s"] else None
    rows.append((f"warm req/s at {run['clients']} clients (Zipf over {members} members), pool "
                 "vs single-model app",
                 f">= {WARM_RATIO}×", None if ratio is None else f"{ratio:.2f}×",
                 None if ratio is None else ratio >= WARM_RATIO))
    cold = cold_summaries(run)["first"]
    rows.append(("cold load of a MiniLM-size member on an idle server (median latency "
                 "over a warm request)", f"< {COLD_LOAD_S:g} s",
                 None if cold is None else f"{cold['median']:.2f} s (max {cold['max']:.2f} s)",
                 None if cold is None else cold["median"] < COLD_LOAD_S))
    return [{"target": name, "wanted": wanted, "measured": measured, "met": met}
            for name, wanted, measured, met in rows]


def _description(record: dict, members: int) -> str:
    system = record["system"]
    if system == "pool":
        return f"the pool's replicas holding all {members} members between them"
    if system == "pool-m00":
        return f"the same replicas (all {members} held), all traffic to `m00`"
    if system == "pool-churn":
        return (f"the pool's replicas holding at most {record['max_models']} of {members} "
                "members each")
    if system == "single":
        return "`m00` as an ordinary single model (tokenizer replica apart)"
    if system == "single-colocated":
        return "`m00` as a single model tokenizing in its replica, as pool replicas do"
    return (f"{record['served']} members as separate single models (colocated tokenizer, "
            f"num_cpus {SEPARATE_NUM_CPUS:g} each)")


def _seconds(stats: dict | None) -> str:
    if stats is None:
        return "| – | – | – | – |"
    return (f"| {stats['count']} | {stats['median']:.2f} | {stats['p90']:.2f} "
            f"| {stats['max']:.2f} |")


def _notes(run: dict) -> list[str]:
    """Throughput ratios and memory, one bullet each."""
    members = run["members"]
    pool, alone, single = find(run, "pool"), find(run, "pool-m00"), find(run, "single")
    separate = find(run, "separate")
    notes = []
    if pool and alone and single and single["req_s"]:
        zipf, one = pool["req_s"] / single["req_s"], alone["req_s"] / single["req_s"]
        notes.append(f"Warm req/s against the single model: pool **{zipf:.2f}×** with Zipf "
                     f"traffic over {members} members (a batch holds one member's texts), "
                     f"**{one:.2f}×** with all traffic to one member.")
    if pool:
        rss = [pool[key]["rss_mb"] for key in ("memory_empty", "memory_one", "memory")]
        notes.append(f"Pool replica memory (RSS): {rss[0]:.0f} MB with no member, {rss[1]:.0f} "
                     f"MB with one (the first load also brings in the libraries), "
                     f"{rss[2]:.0f} MB with all {members}: **"
                     f"{(rss[2] - rss[1]) / (members - 1):.0f} MB per further member** "
                     f"(engine {run['shape']['engine']}); "
                     f"{pool['memory']['pss_file_mb']:.0f} MB of it are weights memory-mapped "
                     "from the safetensors files, resident only where touched.")
        if pool.get("exports_awaited_s") is not None:
            notes.append("Members answer in PyTorch as soon as they are loaded and switch to "
                         "ONNX Runtime once exported in the background: the last of the "
                         f"{members} exports was done {pool['exports_awaited_s']:.0f} s after "
                         "the last member's first request.")
    if separate:
        per_replica = separate["memory"]["rss_mb"] / separate["served"]
        notes.append(f"Separate single models: **{per_replica:.0f} MB RSS per model replica**; "
                     f"with {separate['mem_available_before_mb'] / 1024:.1f} GB available "
                     f"(less {separate['memory_reserve_mb'] / 1024:.0f} GB for the rest) about "
                     f"{separate['fit_in_memory']} would fit this machine's memory, each "
                     "reserving CPUs of its own.")
    return [f"- {note}" for note in notes]


def _cold_table(run: dict) -> list[str]:
    cold = cold_summaries(run)
    return [
        "Cold loads (seconds): a request's latency minus the same request's warm latency "
        "(loading weights and tokenizer, and with engine onnx the CPU that the previous "
        "members' background exports take meanwhile).", "",
        "| cold load | count | median | p90 | max |", "|---|---|---|---|---|",
        f"| first request of each member, fresh idle pool replica {_seconds(cold['first'])}",
        f"| each replica's very first load (one-time costs) {_seconds(cold['very_first'])}",
        "| member evicted by the churn run, requested again on the idle replica (evicts "
        f"another) {_seconds(cold['reloads'])}",
    ]


def markdown(run: dict) -> str:
    members, shape = run["members"], run["shape"]
    lines = [f"Model-pool benchmark {run['started']} on {run['machine']}: {members} MiniLM-L6 "
             f"classifiers, Zipf(s=1.1) traffic over the members, {run['clients']} clients "
             f"(wrk), {run['duration_s']:g} s per system, warm. Every model replica: engine "
             f"{shape['engine']}, {shape['num_threads']} thread(s), max_batch_size "
             f"{shape['max_batch_size']}, batch_wait_timeout_s "
             f"{shape['batch_wait_timeout_s']:g}; pool and single: {shape['num_replicas']} "
             f"replica(s) reserving num_cpus {shape['num_cpus']:g} each.", "",
             "| system | what | models | req/s | p50 ms | p99 ms | errors | model replicas "
             "| RSS MB | PSS MB | loads / unloads in the run |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in run["results"]:
        churn = f"{r['loads']} / {r['unloads']}" if "loads" in r else "–"
        lines.append(
            f"| {r['system']} | {_description(r, members)} | {r['served']} | {r['req_s']:.1f} "
            f"| {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['error_count']} "
            f"| {r['memory']['replicas']} | {r['memory']['rss_mb']:.0f} "
            f"| {r['memory']['pss_mb']:.0f} | {churn} |")
    lines += ["", *_notes(run), "", *_cold_table(run), "",
              "| target | wanted | measured | met |", "|---|---|---|---|"]
    for t in run["targets"]:
        met = {None: "–", True: "**yes**", False: "no"}[t["met"]]
        lines.append(f"| {t['target']} | {t['wanted']} | {t['measured'] or 'not measured'} "
                     f"| {met} |")
    if run["failures"]:
        lines += ["", "Failed: " + "; ".join(run["failures"])]
    return "\n".join(lines) + "\n"


def write(run: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.json", out / "results.md"]
    paths[0].write_text(json.dumps(run, indent=1))
    paths[1].write_text(markdown(run))
    return paths
