"""The reliability run → reliability.json and a Markdown table, reliability.md."""

from __future__ import annotations

import json
from pathlib import Path


def _refusals(over: dict) -> str:
    """``429: 10, 503: 5, Retry-After 1``: the refusals by status."""
    statuses = [f"{status}: {count}" for status, count in over["refused_by_status"].items()
                if count]
    return ", ".join([*statuses, f"Retry-After {', '.join(over['retry_after']) or '-'}"])


def _drained(seconds: float | None) -> str:
    return ("backlog never drained" if seconds is None
            else f"a lone request answered within 1 s again {seconds:.0f} s later")


def markdown(run: dict) -> str:
    """One row a scenario, and the requests lost over all of them."""
    cap, bad = run["capacity"], run["bad_input"]
    lines = [
        "| scenario | load | result |",
        "|---|---|---|",
        f"| capacity | closed loop, {cap['clients']} clients, one short text | "
        f"**{cap['req_s']:.0f} req/s** |",
    ]
    for over in run["overload"]:
        memory = over["memory_mb"]
        lines.append(
            f"| overload | {over['offered_req_s']:.0f} req/s offered "
            f"({over['factor']:g}× capacity) for {over['duration_s']:g} s | "
            f"sent {over['sent']} = answered {over['answered']} + refused {over['refused']} "
            f"({_refusals(over)}) + other "
            f"{over['other_status']} + lost {over['lost']}; load held "
            f"**{over['answered_req_s']:.0f} req/s**; answered p99 "
            f"{over['answered_p99_ms']:.0f} ms; refused p50 {over['refused_p50_ms']:.0f} ms, "
            f"p99 {over['refused_p99_ms']:.0f} ms; replica memory {memory['before']:.0f} → peak "
            f"{memory['peak']:.0f} → {memory['after']:.0f} MB; "
            f"{_drained(over['drained_s'])} |")
    for fault in run["faults"]:
        replaced = (f"{fault['replaced_s']:.1f} s" if fault["replaced_s"] is not None
                    else "not replaced")
        lines.append(
            f"| SIGKILL a `{fault['deployment']}` replica (1 of {fault['replicas']}) | "
            f"{fault['rate']:.0f} req/s for {fault['duration_s']:g} s | "
            f"failed {fault['sent'] - fault['answered']} of {fault['sent']} "
            f"({fault['other_status']} error answers, {fault['lost']} lost); "
            f"replaced in {replaced} |")
    lines.append(
        f"| bad input | {bad['tried']} kinds of malformed or absurd requests | "
        f"{bad['clear_4xx']} clear 4xx JSON errors, {bad['server_errors']} 5xx; /health "
        f"{'200' if bad['healthy_after'] else 'NOT 200'} afterwards |")
    lost = sum(scenario["lost"] for scenario in (*run["overload"], *run["faults"]))
    lines.append(f"| requests lost (no answer at all) | all scenarios | **{lost}** |")
    return "\n".join(lines) + "\n"


def write(run: dict, out: Path) -> str:
    """Write ``run`` to ``out`` as reliability.json and reliability.md; returns the table."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "reliability.json").write_text(json.dumps(run, indent=1))
    table = markdown(run)
    (out / "reliability.md").write_text(table)
    return table
