"""``python -m bench.reliability``: overload, killed replicas and bad input against the
default application, started locally the way ``make serve`` runs it; prints a table.

Scenarios, one after the other on one app:
1. capacity: closed loop (wrk, 64 clients, one short text per request);
2. overload: open loop at ``--overload`` × capacity for ``--duration`` s: every request
   sent must be answered or refused (429 + Retry-After), none hung or reset; the accepted
   requests' p99 and the replicas' memory are recorded, and the next scenario waits until
   a lone request is answered within a second again (the backlog has drained);
3. faults: under a steady open loop at a third of the capacity (the closed-loop capacity
   comes from full batches; an open loop sustains less), SIGKILL a model replica, then a
   tokenizer replica: failed requests and the time until Ray Serve has replaced it;
4. bad input: malformed or absurd requests must get a 4xx JSON error, and ``/health`` 200.
Results go to ``--out`` as reliability.json and reliability.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench import loadgen
from bench.project import APP, ROOT, Project, default_args
from bench.workloads import Workload
from serving.haproxy_edge import settings as edge_settings

CLOSED_LOOP_CLIENTS = 64


def _options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.reliability", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=20, help="seconds of overload")
    parser.add_argument("--overload", default="2,4",
                        help="offered loads, as multiples of the capacity (comma-separated)")
    parser.add_argument("--fault-duration", type=float, default=40,
                        help="seconds of steady load around each killed replica")
    parser.add_argument("--config", type=Path, default=ROOT / "serve_config.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--smoke", action="store_true",
                        help="seconds-long scenarios: checks the harness, not the server")
    return parser.parse_args()


# --- replica processes -------------------------------------------------------------------


def replica_pids(app: str, deployment: str | None = None) -> list[int]:
    """PIDs of the live replica processes of ``deployment`` (every deployment of ``app``
    when None); Ray titles them ``ray::ServeReplica:<app>:<deployment>``."""
    prefix = f"ray::ServeReplica:{app}:" + (deployment or "")
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            title = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if deployment is None and title.startswith(prefix):
            pids.append(int(proc.name))
        elif title == prefix or title.startswith(prefix + "."):
            pids.append(int(proc.name))
    return pids


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


class MemorySampler:
    """Peak resident memory of the app's replica processes, sampled twice a second."""

    def __init__(self, app: str) -> None:
        self.app, self.peak_mb = app, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now_mb(self) -> float:
        return _rss_mb(replica_pids(self.app))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self.now_mb())
            self._stop.wait(0.5)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# --- scenarios -------------------------------------------------------------------------


def _bodies(model: str) -> tuple[str, list[str]]:
    inputs = Workload("short", 1).requests(256)
    return f"/models/{model}", [json.dumps({"inputs": text}) for text in inputs]


def capacity(url: str, model: str, duration_s: float) -> dict:
    path, bodies = _bodies(model)
    loadgen.closed_loop(url, path, bodies, 16, min(3.0, duration_s))  # warm-up
    measured = loadgen.closed_loop(url, path, bodies, CLOSED_LOOP_CLIENTS, duration_s)
    return {"clients": CLOSED_LOOP_CLIENTS, "req_s": measured.requests / measured.duration_s,
            "errors": measured.errors, "p99_ms": measured.p99_ms}


def _outcomes(measured: loadgen.Measured) -> dict:
    """Sent = answered + refused + other statuses + lost (no answer at all)."""
    detail, errors = measured.detail, measured.errors
    refused_by_status = {status: errors.get(f"status_{status}", 0) for status in loadgen.REFUSALS}
    refused = sum(refused_by_status.values())
    statuses = sum(count for kind, count in errors.items() if kind.startswith("status_"))
    other = statuses - refused
    lost = detail["sent"] - detail["ok"] - refused - other
    return {"sent": detail["sent"], "answered": detail["ok"], "refused": refused,
            "other_status": other, "lost": lost,
            "hung": errors.get("hung", 0),
            "connection_errors": sum(count for kind, count in errors.items()
                                     if not kind.startswith("status_") and kind != "hung"),
            "refused_by_status": refused_by_status,
            "errors": errors, "answered_p50_ms": detail["ok_p50_ms"],
            "answered_p99_ms": detail["ok_p99_ms"], "refused_p50_ms": detail["refused_p50_ms"],
            "refused_p99_ms": detail["refused_p99_ms"], "retry_after": detail["retry_after"],
            "loadgen_cpu_share": measured.loadgen_cpu_share}


def overload(url: str, model: str, rate: float, duration_s: float) -> dict:
    path, bodies = _bodies(model)
    with MemorySampler(APP) as memory:
        before = memory.now_mb()
        measured = loadgen.open_loop(url, path, bodies, rate, duration_s)
        time.sleep(2)
        after = memory.now_mb()
    outcome = _outcomes(measured)
    return {"offered_req_s": rate, "duration_s": duration_s, **outcome,
            "answered_req_s": outcome["answered"] / measured.duration_s,
            "memory_mb": {"before": before, "peak": memory.peak_mb, "after": after}}


def kill_replica(url: str, model: str, deployment: str, rate: float, duration_s: float) -> dict:
    """SIGKILL one replica of ``deployment`` a few seconds into a steady open loop."""
    path, bodies = _bodies(model)
    pids = replica_pids(APP, deployment)
    if not pids:
        raise RuntimeError(f"no replica process of {deployment}")
    result: dict = {}
    load = threading.Thread(target=lambda: result.update(
        measured=loadgen.open_loop(url, path, bodies, rate, duration_s)))
    load.start()
    time.sleep(min(3.0, duration_s / 4))
    os.kill(pids[0], signal.SIGKILL)
    killed = time.monotonic()
    replaced_s = None
    while load.is_alive() or replaced_s is None:
        live = replica_pids(APP, deployment)
        if replaced_s is None and len(live) >= len(pids) and pids[0] not in live:
            replaced_s = time.monotonic() - killed
        if replaced_s is None and time.monotonic() - killed > 300:
            break
        time.sleep(0.2)
    load.join()
    return {"deployment": deployment, "replicas": len(pids), "rate": rate,
            "duration_s": duration_s, "replaced_s": replaced_s,
            **_outcomes(result["measured"])}


def bad_inputs(model: str) -> list[tuple[str, str, bytes, dict[str, str]]]:
    """(what, path, body, headers) of malformed or absurd requests."""
    json_type = {"Content-Type": "application/json"}
    route = f"/models/{model}"

    def body(value) -> bytes:
        return json.dumps(value).encode()

    return [
        ("malformed JSON", route, b'{"inputs": ', json_type),
        ("inputs a number", route, body({"inputs": 5}), json_type),
        ("inputs an object", route, body({"inputs": {"a": 1}}), json_type),
        ("inputs nested lists", route, body({"inputs": [[["x"]]]}), json_type),
        ("missing inputs", route, body({"parameters": {}}), json_type),
        ("empty string", route, body({"inputs": ""}), json_type),
        ("empty list", route, body({"inputs": []}), json_type),
        ("whitespace only", route, body({"inputs": " \n\t "}), json_type),
        ("too many inputs", route, body({"inputs": ["x"] * 100_000}), json_type),
        ("too long, truncation off", route,
         body({"inputs": "word " * 2000, "parameters": {"truncation": False}}), json_type),
        ("body over the limit", route, body({"inputs": "x" * (3 * 1024 * 1024)}), json_type),
        ("invalid UTF-8", route, b'{"inputs": "\xff\xfe"}', json_type),
        ("lone surrogate", route, b'{"inputs": "\\ud800"}', json_type),
        ("NUL character", route, body({"inputs": "a\u0000b"}), json_type),
        ("control characters only", route, body({"inputs": "\u0001\u0002"}), json_type),
        ("unknown model", "/models/no-such-model", body({"inputs": "x"}), json_type),
        ("unknown parameter", route, body({"inputs": "x", "parameters": {"top_k": 2}}),
         json_type),
        ("absurd dimensions", route, body({"inputs": "x", "parameters": {"dimensions": 10**9}}),
         json_type),
        ("negative dimensions", route, body({"inputs": "x", "parameters": {"dimensions": -1}}),
         json_type),
        ("NaN parameter", route, b'{"inputs": "x", "parameters": {"dimensions": NaN}}',
         json_type),
        ("deep nesting", route, b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}", json_type),
        ("not JSON content type", route, b"inputs=x", {"Content-Type": "text/plain"}),
        ("empty body", route, b"", json_type),
        ("JSON null", route, b"null", json_type),
        ("OpenAI unknown encoding", "/v1/embeddings",
         body({"model": model, "input": "x", "encoding_format": "int4"}), json_type),
        ("OpenAI unknown model", "/v1/embeddings", body({"model": "gpt-9", "input": "x"}),
         json_type),
        ("TEI rerank without texts", "/rerank", body({"query": "q"}), json_type),
        ("TEI embed of a number", "/embed", body({"inputs": 3}), json_type),
    ]


def send_bad_inputs(url: str, model: str) -> dict:
    results = []
    for what, path, data, headers in bad_inputs(model):
        request = urllib.request.Request(url + path, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, text = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read()
        except OSError as error:  # a reset or a refused connection: a failure here
            status, text = 0, repr(error).encode()
        try:
            parsed = json.loads(text)
            json_error = isinstance(parsed, dict) and {"error", "error_type"} <= set(parsed)
        except ValueError:
            json_error = False
        results.append({"what": what, "status": status, "json_error": json_error})
    with urllib.request.urlopen(url + "/health", timeout=60) as response:
        healthy = response.status == 200
    return {"tried": len(results),
            "clear_4xx": sum(1 for r in results if 400 <= r["status"] < 500 and r["json_error"]),
            "server_errors": sum(1 for r in results if r["status"] >= 500 or r["status"] == 0),
            "healthy_after": healthy, "cases": results}


# --- report ------------------------------------------------------------------------------


def _refusals(over: dict) -> str:
    """``429: 10, 503: 5, Retry-After 1``: the refusals by status."""
    statuses = [f"{status}: {count}" for status, count in over["refused_by_status"].items()
                if count]
    return ", ".join([*statuses, f"Retry-After {', '.join(over['retry_after']) or '-'}"])


def _drained(seconds: float | None) -> str:
    return ("backlog never drained" if seconds is None
            else f"a lone request answered within 1 s again {seconds:.0f} s later")


def markdown(run: dict) -> str:
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


def main() -> None:
    options = _options()
    if not loadgen.have_wrk():
        raise SystemExit("wrk is needed (make wrk, or apt-get install wrk)")
    duration = 4 if options.smoke else options.duration
    factors = [2.0] if options.smoke else [float(f) for f in options.overload.split(",") if f]
    fault_duration = 8 if options.smoke else options.fault_duration
    args = default_args(options.config)
    model = args["models"][0]["name"]
    started = time.time()
    project = Project()
    try:
        project.deploy(args)
        print("measuring capacity...", flush=True)
        cap = capacity(project.url, model, 3 if options.smoke else 10)
        over = []
        path, bodies = _bodies(model)
        for factor in factors:
            rate = factor * cap["req_s"]
            print(f"capacity {cap['req_s']:.0f} req/s; overload at {rate:.0f} req/s...",
                  flush=True)
            over.append({"factor": factor, **overload(project.url, model, rate, duration)})
            over[-1]["drained_s"] = loadgen.wait_drained(project.url, path, bodies[0])
        faults = []
        for deployment in (f"{model}-model", f"{model}-tokenizer"):
            print(f"killing a {deployment} replica under load...", flush=True)
            faults.append(kill_replica(project.url, model, deployment, cap["req_s"] / 3,
                                       fault_duration))
        print("sending bad input...", flush=True)
        bad = send_bad_inputs(project.url, model)
    finally:
        project.stop()
    run = {"options": {"overload": options.overload, "duration_s": duration,
                       "fault_duration_s": fault_duration, "smoke": options.smoke,
                       "config": str(options.config)},
           "haproxy_edge": dict(zip(("replica_maxconn", "queue_timeout_s"), edge_settings(),
                                    strict=True)),
           "cpu_count": os.cpu_count(), "started": started, "capacity": cap,
           "overload": over, "faults": faults, "bad_input": bad}
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "reliability.json").write_text(json.dumps(run, indent=1))
    table = markdown(run)
    (options.out / "reliability.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
