"""One benchmark run: the limit, then each server alone on the machine, cell by cell."""

from __future__ import annotations

import argparse
import os
import platform
import time

from tqdm import tqdm

from bench import loadgen, plan, report, sentiment
from bench.processes import stop_group
from bench.project import Project, default_args, free_port
from bench.runtimes import measure as runtimes
from bench.systems import (
    PEERS,
    SENTIMENT,
    SYSTEMS,
    project_args,
    project_body,
    start_peer,
)
from bench.workloads import Workload, parse


class Bench:
    """The run ``python -m bench`` options describe; ``run()`` returns its results."""

    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.systems = [s.strip() for s in options.systems.split(",") if s.strip()]
        unknown = set(self.systems) - set(SYSTEMS)
        if unknown:
            raise SystemExit(f"unknown systems: {', '.join(sorted(unknown))}")
        self.variants = dict(plan.parse_variant(text) for text in options.variant)
        self.systems += [f"project-{name}" for name in self.variants]
        self.args = default_args(options.config)
        self.model_spec = self.args["models"][0]
        self.name = self.model_spec["name"]
        self.model_dir = options.model_dir or _model_dir(self.model_spec["model"])
        self.matrix = plan.parse_matrix(options.matrix) if options.matrix else (
            plan.SMOKE if options.smoke else plan.FULL)
        self.rates = [] if options.smoke else [float(r) for r in options.rates.split(",") if r]
        self.results: list[dict] = []
        self.failures: list[str] = []
        self._tokens = _tokens_per_text(self.model_dir, list(self.matrix))
        self._sentiment_dir: str | None = options.sentiment_model_dir

    @property
    def sentiment_dir(self) -> str:
        """The classifier's directory (built at full size on first use)."""
        if self._sentiment_dir is None:
            self._sentiment_dir = sentiment.ensure_model()
        return self._sentiment_dir

    def cells(self, system: str) -> list[tuple[str, str, float]]:
        """(workload, mode, clients or rate) for one system."""
        return plan.cells(system, self.matrix, self.rates)

    def run(self) -> dict:
        """Measure every system; returns the run as ``bench.report`` writes it."""
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        servers = [s for s in self.systems if s != "limit"]
        total = sum(len(self.cells(s)) for s in servers) + ("limit" in self.systems)
        limit = None
        with tqdm(total=total, unit="cell", dynamic_ncols=True) as bar:
            if "limit" in self.systems:
                limit = self._limit(bar)
            for system in PEERS:
                if system in self.systems:
                    self._peer(system, bar)
            # `make serve`'s way (HAProxy) first, then plain `serve run`'s (Python proxy).
            project = [s for s in servers if s.startswith("project") and s != "project-proxy"]
            project += ["sentiment-project"] if "sentiment-project" in servers else []
            if project:
                self._project(project, bar, haproxy=True)
            if "project-proxy" in servers:
                self._project(["project-proxy"], bar, haproxy=False)
        run = {"started": started, "machine": _machine(), "model": self.model_spec["model"],
               "duration_s": self.options.duration, "limit": limit, "results": self.results,
               "failures": self.failures, "config": str(self.options.config)}
        run["targets"] = report.targets(self.results, limit)
        return run

    def _limit(self, bar: tqdm) -> dict:
        """The runtimes survey (``python -m bench.runtimes``) at batch 1 and 32."""
        bar.set_description("limit: the bare model in every runtime")
        names = list(runtimes.RUNTIMES)
        if self.options.smoke:
            names = ["torch", "onnxruntime"]
        survey = runtimes.survey(self.model_dir, names, runtimes.core_splits(os.cpu_count() or 1),
                                 [1, 32], 0.5 if self.options.smoke else 3, progress=bar.write)
        bar.update()
        return survey

    def _peer(self, system: str, bar: tqdm) -> None:
        bar.set_description(f"{system}: starting")
        port = free_port()
        model_dir = self.sentiment_dir if system.startswith("sentiment-") else self.model_dir
        try:
            peer = start_peer(system, model_dir, port, self.options.out)
        except Exception as exc:  # one peer that cannot start must not lose the others
            self.failures.append(f"{system}: {type(exc).__name__}: {exc}")
            bar.write(f"{system} failed to start: {exc}")
            bar.update(len(self.cells(system)))
            return
        try:
            self._cells(system, f"http://127.0.0.1:{port}", peer.path, bar, peer.body)
        finally:
            stop_group(peer.process)

    def _project(self, systems: list[str], bar: tqdm, haproxy: bool) -> None:
        bar.set_description("project: starting Ray Serve")
        project = Project(haproxy=haproxy)
        try:
            project.deploy(self.args)
            for system in systems:
                try:
                    name = self.name
                    if system == "sentiment-project":
                        name = SENTIMENT
                        project.deploy(sentiment.app_args(self.sentiment_dir, self.args))
                    elif (args := project_args(system, self.args, self.variants)) is not None:
                        project.deploy(args)
                    by_handle = system in ("project-handle", "project-client")
                    self._cells(system, project.url, f"/models/{name}", bar, project_body,
                                handle=project if by_handle else None)
                except Exception as exc:  # one broken variant must not lose the others
                    self.failures.append(f"{system}: {type(exc).__name__}: {exc}")
                    bar.write(f"{system} failed: {exc}")
        finally:
            project.stop()

    def _cells(self, system: str, url: str, path: str, bar: tqdm, body, handle=None) -> None:
        warm = [body(x) for x in Workload("short", 1).requests(64)]
        merged = system == "project-client"
        if handle is None:
            loadgen.closed_loop(url, path, warm, 16, self.options.warmup)
        else:
            handle.handle_closed_loop(self.name, Workload("short", 1).requests(64), 16,
                                      self.options.warmup, merged)
        for workload_name, mode, level in self.cells(system):
            # Each cell starts on an idle server, not on the leftovers of the one before.
            loadgen.wait_drained(url, path, warm[0])
            time.sleep(1)
            load = f"x{int(level)}" if mode == "closed" else f"@{level:g}/s"
            bar.set_description(f"{system}: {workload_name} {load}")
            workload = parse(workload_name)
            inputs = workload.requests(64 if workload.per_request > 1 else 256)
            if handle is not None:
                measured = handle.handle_closed_loop(self.name, inputs, int(level),
                                                     self.options.duration, merged)
            elif mode == "closed":
                measured = loadgen.closed_loop(url, path, [body(x) for x in inputs],
                                               int(level), self.options.duration)
            else:
                measured = loadgen.open_loop(url, path, [body(x) for x in inputs], level,
                                             self.options.duration)
            self._record(system, workload, mode, level, measured)
            bar.update()

    def _record(self, system, workload, mode, level, measured) -> None:
        req_s = measured.requests / measured.duration_s if measured.duration_s else 0.0
        texts_s = req_s * workload.per_request
        self.results.append({
            "system": system, "workload": workload.name, "mode": mode,
            "clients": int(level) if mode == "closed" else None,
            "rate": level if mode == "open" else None,
            "requests": measured.requests, "req_s": req_s, "texts_s": texts_s,
            "tokens_s": texts_s * self._tokens[workload.name],
            "p50_ms": measured.p50_ms, "p95_ms": measured.p95_ms, "p99_ms": measured.p99_ms,
            "errors": measured.errors, "error_count": measured.error_count,
            "loadgen_cpu_share": measured.loadgen_cpu_share,
        })


def _model_dir(model: str) -> str:
    from serving.models import resolve_model_source

    return resolve_model_source(model)


def _tokens_per_text(model_dir: str, workloads: list[str]) -> dict[str, float]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    counts = {}
    for name in workloads:
        workload = parse(name)
        texts = [t for x in workload.requests(64) for t in ([x] if isinstance(x, str) else x)]
        ids = tokenizer(texts, truncation=True)["input_ids"]
        counts[name] = sum(map(len, ids)) / len(ids)
    return counts


def _machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} CPU cores ({cpu}), {gpu}"
