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
import os
import time
from pathlib import Path

from bench import loadgen
from bench.project import ROOT, Project, default_args
from bench.reliability import report
from bench.reliability.scenarios import (
    bodies,
    capacity,
    kill_replica,
    overload,
    send_bad_inputs,
)
from serving.haproxy_edge import settings as edge_settings


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


def main() -> None:
    """Start the app, run the scenarios one after the other, write and print the report.

    Raises:
        SystemExit: ``wrk`` is missing.
    """
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
        path, requests = bodies(model)
        for factor in factors:
            rate = factor * cap["req_s"]
            print(f"capacity {cap['req_s']:.0f} req/s; overload at {rate:.0f} req/s...",
                  flush=True)
            over.append({"factor": factor, **overload(project.url, model, rate, duration)})
            over[-1]["drained_s"] = loadgen.wait_drained(project.url, path, requests[0])
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
    print(report.write(run, options.out))


if __name__ == "__main__":
    main()
