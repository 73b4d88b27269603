"""One pool benchmark run: each system deployed alone on this machine's local Ray (HAProxy
mode, as ``make serve`` runs it), warmed, then loaded by wrk with the same texts and the
same Zipf-distributed sequence of members."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench import loadgen
from bench.loadgen import Measured
from bench.pools import replicas
from bench.pools.models import member_names, zipf_members
from bench.pools.systems import POOL, Shape, pool_app, separate_app, single_app
from bench.project import Project
from bench.systems import project_body
from bench.workloads import Workload

CLIENTS = 64
WARMUP_CLIENTS = 16
MEMORY_RESERVE_MB = 3072  # left free when sizing the separate models: Ray, HAProxy, wrk


def _post(url: str, body: str, timeout_s: float = 120) -> tuple[int, float]:
    """(status, seconds) of one POST."""
    request = urllib.request.Request(url, data=body.encode(),
                                     headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status, time.perf_counter() - started


class PoolBench:
    """The run ``python -m bench.pools`` options describe; ``run()`` returns its results."""

    def __init__(self, options: argparse.Namespace, directory: Path, shape: Shape) -> None:
        self.options, self.directory, self.shape = options, directory, shape
        self.members = member_names(options.members)
        self.bodies = [project_body(text) for text in Workload("short", 1).requests(256)]
        self.results: list[dict] = []
        self.cold: dict = {}
        self.failures: list[str] = []
        self._project: Project | None = None

    @property
    def project(self) -> Project:
        assert self._project is not None, "run() starts the project"
        return self._project

    def run(self) -> dict:
        """Measure every system, one after the other; returns the run as
        ``bench.pools.report`` writes it."""
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        steps = {"pool": self._pool, "pool-churn": self._churn,
                 "single": lambda: self._single("single", colocate=False),
                 "single-colocated": lambda: self._single("single-colocated", colocate=True),
                 "separate": self._separate}
        # A replaced ingress drains for 30 s before it stops (HAProxy has long dropped it by
        # then); nothing is in flight when this run replaces an app, so 5 s will do.
        os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "5")
        self._project = Project()
        try:
            for system, step in steps.items():
                print(f"{system}: deploying and measuring...", flush=True)
                begun = time.monotonic()
                try:
                    step()
                except Exception as exc:  # one broken system must not lose the others
                    self.failures.append(f"{system}: {type(exc).__name__}: {exc}")
                    print(f"{system} failed: {exc}", flush=True)
                print(f"{system}: {time.monotonic() - begun:.0f} s", flush=True)
        finally:
            self.project.stop()
        return {"started": started, "machine": _machine(), "members": len(self.members),
                "duration_s": self.options.duration, "clients": CLIENTS,
                "shape": vars(self.shape), "models_dir": str(self.directory),
                "results": self.results, "cold_loads": self.cold, "failures": self.failures}

    # --- the systems ---

    def _pool(self) -> None:
        """Every member held by the pool's replicas: each loaded by one request on the idle
        server (its cold load), then (engine onnx) their exports awaited, then Zipf traffic
        over all of them, then traffic to ``m00`` only."""
        self._deploy(pool_app(self.directory, len(self.members), self.shape))
        empty = self._memory()
        first = [self._cold_request(f"/models/{POOL}/{member}") | {"member": member}
                 for member in self.members]
        held = self._held()
        self._holders(first)
        exported_s = replicas.wait_exported(POOL) if self.shape.engine == "onnx" else None
        memory = self._memory()
        measured = self._load(self._zipf_paths(f"/models/{POOL}/", self.members))
        # The same replica with one member's traffic: the pool's own cost, apart from the
        # smaller batches that traffic spread over many members makes.
        alone = self._load([f"/models/{POOL}/{self.members[0]}"])
        self.cold["first_loads"] = first
        self._record("pool", measured, served=len(held), max_models=len(self.members),
                     memory=memory, memory_empty=empty, memory_one=first[0]["memory"],
                     exports_awaited_s=exported_s,
                     failed_first=sum(sample["status"] != 200 for sample in first))
        self._record("pool-m00", alone, served=len(held), max_models=len(self.members),
                     memory=self._memory())

    def _churn(self) -> None:
        """The same pool holding fewer members than the traffic asks for: loads and unloads
        during the run, then cold loads of members it does not hold, on the idle server."""
        limit = min(self.options.max_models, len(self.members))
        self._deploy(pool_app(self.directory, limit, self.shape))
        for member in self.members[:limit]:  # full of the most requested members
            _post(f"{self.project.url}/models/{POOL}/{member}", self.bodies[0])
        paths = self._zipf_paths(f"/models/{POOL}/", self.members)
        self._warm_up(paths)
        replicas.settle_metrics()
        before = replicas.pool_metrics(POOL)
        measured = loadgen.closed_loop(self.project.url, paths[0], self.bodies, CLIENTS,
                                       self.options.duration, paths=paths)
        loadgen.wait_drained(self.project.url, paths[0], self.bodies[0])
        replicas.settle_metrics()
        after = replicas.pool_metrics(POOL)
        held = self._held()
        absent = [member for member in reversed(self.members) if member not in held]
        reloads = [self._cold_request(f"/models/{POOL}/{member}") | {"member": member}
                   for member in absent[: self.options.cold]]
        self.cold["reloads"] = reloads
        self._record("pool-churn", measured, served=len(self.members), max_models=limit,
                     memory=self._memory(),
                     loads=replicas.metrics_growth(before, after, "loads"),
                     unloads=replicas.metrics_growth(before, after, "unloads"))

    def _single(self, system: str, colocate: bool) -> None:
        """The most requested member as an ordinary single model; all traffic to it."""
        member = self.members[0]
        self._deploy(single_app(self.directory / member, self.shape, colocate))
        measured = self._load([f"/models/{member}"])
        self._record(system, measured, served=1, memory=self._memory())

    def _separate(self) -> None:
        """As many members as separate single models as fit memory (at most
        ``--separate``), each with a replica of its own; Zipf traffic over them."""
        # What is available once the running app's model replicas are gone.
        available = (replicas.mem_available_mb()
                     + replicas.memory_mb(list(replicas.model_replicas()))["pss_mb"])
        colocated = next((r for r in self.results if r["system"] == "single-colocated"), None)
        per_replica = (colocated["memory"]["rss_mb"] / colocated["memory"]["replicas"]
                       if colocated else 1024.0)
        fit = int((available - MEMORY_RESERVE_MB) // per_replica)
        count = max(1, min(self.options.separate, len(self.members), fit))
        names = self.members[:count]
        self._deploy(separate_app([self.directory / name for name in names], self.shape))
        measured = self._load(self._zipf_paths("/models/", names))
        memory = self._memory()
        self._record("separate", measured, served=count, memory=memory,
                     mem_available_before_mb=available, memory_reserve_mb=MEMORY_RESERVE_MB,
                     fit_in_memory=int((available - MEMORY_RESERVE_MB)
                                       // (memory["rss_mb"] / count)))

    # --- helpers ---

    def _deploy(self, args: dict) -> None:
        """``args`` in place of the app running now; returns once the model replicas of
        that one have stopped."""
        previous = list(replicas.model_replicas())
        self.project.deploy(args)
        replicas.wait_gone(previous)

    def _zipf_paths(self, prefix: str, names: list[str]) -> list[str]:
        return [prefix + names[index] for index in zipf_members(len(names))]

    def _warm_up(self, paths: list[str]) -> None:
        """Every route answered once, a short run, then an idle server again.

        Raises:
            RuntimeError: a route did not answer 200 (the run would measure errors).
        """
        for path in dict.fromkeys(paths):
            status, _ = _post(self.project.url + path, self.bodies[0])
            if status != 200:
                raise RuntimeError(f"POST {path} answered {status}")
        loadgen.closed_loop(self.project.url, paths[0], self.bodies[:64], WARMUP_CLIENTS,
                            self.options.warmup, paths=paths)
        loadgen.wait_drained(self.project.url, paths[0], self.bodies[0])
        time.sleep(1)

    def _load(self, paths: list[str]) -> Measured:
        """Warm-up, then ``CLIENTS`` clients for ``--duration`` s along ``paths``."""
        self._warm_up(paths)
        return loadgen.closed_loop(self.project.url, paths[0], self.bodies, CLIENTS,
                                   self.options.duration, paths=paths)

    def _cold_request(self, path: str) -> dict:
        """A request that loads its model, the replicas' memory then, and the same request
        warm (the best of three)."""
        status, cold_s = _post(self.project.url + path, self.bodies[0])
        memory = self._memory()
        warm_s = min(_post(self.project.url + path, self.bodies[0])[1] for _ in range(3))
        return {"status": status, "cold_s": cold_s, "warm_s": warm_s,
                "extra_s": cold_s - warm_s, "memory": memory}

    def _held(self) -> dict[str, list[str]]:
        """member → the replicas that hold it now, for the members some replica holds."""
        with urllib.request.urlopen(f"{self.project.url}/v1/models", timeout=10) as response:
            cards = json.loads(response.read())["data"]
        return {card["id"].split("/", 1)[1]: card["loaded_on"] for card in cards
                if card["id"].startswith(f"{POOL}/") and card.get("loaded_on")}

    def _holders(self, samples: list[dict]) -> None:
        """Add to each cold-load sample the replica that holds its member (``replica``)."""
        held = self._held()
        for sample in samples:
            sample["replica"] = (held.get(sample["member"]) or [None])[0]

    def _memory(self) -> dict:
        """The model replicas' memory now (the ingress left out)."""
        found = replicas.model_replicas()
        return {"replicas": len(found), "deployments": sorted(set(found.values())),
                **replicas.memory_mb(list(found))}

    def _record(self, system: str, measured: Measured, **extra) -> None:
        req_s = measured.requests / measured.duration_s if measured.duration_s else 0.0
        self.results.append({
            "system": system, "clients": CLIENTS, "requests": measured.requests,
            "req_s": req_s, "p50_ms": measured.p50_ms, "p95_ms": measured.p95_ms,
            "p99_ms": measured.p99_ms, "errors": measured.errors,
            "error_count": measured.error_count,
            "loadgen_cpu_share": measured.loadgen_cpu_share, **extra,
        })


def _machine() -> str:
    import torch

    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
            f"{memory_gb:.0f} GB memory, {gpu}")
