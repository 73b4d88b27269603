"""One generation benchmark run: each system alone on the machine, every concurrency in
turn, the same requests from the same load generator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.generation import metrics, systems, workload
from bench.generation.workload import Request
from bench.processes import log_tail, stop_group
from bench.project import ROOT

LOGS = ROOT / ".bench" / "generation-logs"  # git-ignored
PROBE = Request("The quick brown fox", 0, 1)  # one token: is the server idle?


@dataclass
class Plan:
    """What one run measures and how long each point lasts."""

    systems: list[str]
    concurrency: list[int]
    warmup_s: float
    duration_s: float
    drain_s: float
    stall_s: float  # a stream silent this long is cut (an error)
    project_route: str  # "auto" (OpenAI's when it answers), "openai" or "tgi"
    out: Path
    sizing: systems.Sizing


@dataclass
class Target:
    """A started system: where to send which bodies."""

    url: str
    path: str
    route: str
    model: str
    config: dict[str, Any] = field(default_factory=dict)


class GenerationBench:
    """Measures ``plan.systems`` on ``model_dir`` with ``requests``; ``run()`` returns the
    results, one entry per system and concurrency."""

    def __init__(self, plan: Plan, model_dir: Path, requests: list[Request]) -> None:
        self.plan, self.model_dir, self.requests = plan, model_dir, requests
        self.results: list[dict[str, Any]] = []
        self.failures: list[str] = []
        self.configs: dict[str, Any] = {}

    def run(self) -> None:
        """Measure every system of the plan (a system that fails is reported, not fatal)."""
        project = [s for s in self.plan.systems if s.startswith("project-")]
        if project:
            self._project(project)
        if "transformers-serve" in self.plan.systems:
            self._transformers()

    def _project(self, names: list[str]) -> None:
        from ray import serve

        from bench.project import APP, Project

        _progress("project: starting Ray Serve (HAProxy mode, as make serve)")
        project = Project(haproxy=True)
        try:
            for name in names:
                scheduler = name.removeprefix("project-")
                args = systems.project_args(self.model_dir, scheduler, self.plan.sizing)
                try:
                    # Deleted first: a rolling update would need room for two model replicas.
                    serve.delete(APP)
                    project.deploy(args)
                    route = self._project_route(project.url)
                    path = "/v1/completions" if route == "openai" else f"/models/{systems.NAME}"
                    target = Target(project.url, path, route, systems.NAME,
                                    {"app_args": args, "route": f"POST {path}"})
                    self._measure(name, target)
                except Exception as exc:  # one broken system must not lose the others
                    self.failures.append(f"{name}: {type(exc).__name__}: {exc}")
                    _progress(f"{name} failed: {exc}")
        finally:
            project.stop()

    def _project_route(self, url: str) -> str:
        if self.plan.project_route != "auto":
            return self.plan.project_route
        probe = workload.body(PROBE, "openai", systems.NAME)
        try:
            _request(url + "/v1/completions", probe, timeout_s=120)
            return "openai"
        except Exception as exc:  # not there yet: the TGI-style route
            _progress(f"project: POST /v1/completions does not answer ({exc}); "
                      "using POST /models/{name} with TGI-style events")
            return "tgi"

    def _transformers(self) -> None:
        name = "transformers-serve"
        log = LOGS / "transformers-serve.log"
        _progress(f"{name}: starting (log: {log})")
        try:
            process, url = systems.start_transformers(self.model_dir, self.plan.sizing, log)
        except Exception as exc:
            self.failures.append(f"{name}: {type(exc).__name__}: {exc}\n{log_tail(log)}")
            _progress(f"{name} failed to start: {exc}")
            return
        try:
            command = systems.transformers_command(self.model_dir, 0, self.plan.sizing)
            target = Target(url, "/v1/completions", "openai", str(self.model_dir),
                            {"command": " ".join(command[1:]).replace(" --port 0", ""),
                             "env": {"OMP_NUM_THREADS": str(systems.THREADS)}})
            self._measure(name, target)
        except Exception as exc:
            self.failures.append(f"{name}: {type(exc).__name__}: {exc}\n{log_tail(log)}")
            _progress(f"{name} failed: {exc}")
        finally:
            stop_group(process)
        # Its log says, per request, whether continuous batching served it ("CB: True").
        text = log.read_text(errors="replace") if log.exists() else ""
        self.configs.setdefault(name, {})["requests_logged"] = {
            "continuous_batching": text.count(", CB: True"),
            "sequential": text.count(", CB: False")}

    def _measure(self, name: str, target: Target) -> None:
        bodies = [workload.body(r, target.route, target.model) for r in self.requests]
        probe = workload.body(PROBE, target.route, target.model)
        self.configs[name] = target.config
        _progress(f"{name}: first requests (loading, caches)")
        for body in bodies[:2]:  # first use: lazy initialisation is not measured
            _request(target.url + target.path, body, timeout_s=600)
        idle_s = min(_timed(target.url + target.path, probe) for _ in range(3))
        for clients in self.plan.concurrency:
            _wait_idle(target.url + target.path, probe, max(1.0, 4 * idle_s))
            _progress(f"{name}: {clients} clients, {self.plan.warmup_s:g} s warm-up + "
                      f"{self.plan.duration_s:g} s")
            result = _drive(target.url + target.path, bodies, clients, self.plan)
            point = metrics.summarize(result, [r.max_tokens for r in self.requests])
            self.results.append({"system": name, "clients": clients, "route": target.route,
                                 **point, "loadavg_1m_after": os.getloadavg()[0]})
            _progress(f"{name} x{clients}: {point['tokens_s']:.1f} tokens/s, TTFT p50 "
                      f"{_ms(point['ttft_p50_ms'])}, errors {point['errors'] or 0}")


def _drive(url: str, bodies: list[str], clients: int, plan: Plan) -> dict[str, Any]:
    """One point, by ``bench.generation.client`` in a process of its own."""
    with tempfile.TemporaryDirectory(prefix="bench-gen") as tmp:
        spec, out = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec.write_text(json.dumps({
            "url": url, "bodies": bodies, "clients": clients, "warmup_s": plan.warmup_s,
            "duration_s": plan.duration_s, "drain_s": plan.drain_s, "stall_s": plan.stall_s}))
        subprocess.run([sys.executable, "-m", "bench.generation.client", "--spec", str(spec),
                        "--out", str(out)], check=True, cwd=ROOT)
        return json.loads(out.read_text())


def _request(url: str, body: str, timeout_s: float) -> bytes:
    request = urllib.request.Request(url, data=body.encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return response.read()


def _timed(url: str, body: str, timeout_s: float = 300) -> float:
    started = time.monotonic()
    _request(url, body, timeout_s)
    return time.monotonic() - started


def _wait_idle(url: str, probe: str, fast_s: float, timeout_s: float = 300) -> None:
    """Until a lone one-token request is answered within ``fast_s``: the previous point's
    leftovers (cut streams a server has not noticed yet) must not load the next."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if _timed(url, probe) < fast_s:
                time.sleep(1)
                return
        except OSError:
            pass
        time.sleep(2)
    _progress(f"the server did not go idle in {timeout_s:g} s; measuring anyway")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    """Cores, load average at the start (other work on a shared machine shows there)."""
    return {"cpus": os.cpu_count(), "loadavg_at_start": list(os.getloadavg())}
