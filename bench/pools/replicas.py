"""This run's replicas, seen from outside: their processes (Ray's workers under this process,
so another Serve app on the machine is never counted), their memory, the loads and unloads
the pool replicas count (Prometheus metrics)."""

from __future__ import annotations

import os
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from bench.project import APP
from bench.reliability.replicas import replica_pids

INGRESS = "Ingress"
_SAMPLE = re.compile(r'^(\w+)\{(.*)\} ([0-9.eE+-]+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
_POOL_METRICS = {  # exported name → short name (deployments/metrics.py: PoolMetrics)
    "ray_nlp_pool_loads_total": "loads",
    "ray_nlp_pool_unloads_total": "unloads",
}


def _ancestors(pid: int) -> Iterator[int]:
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state: ppid
        yield pid


def model_replicas() -> dict[int, str]:
    """pid → deployment of every live replica of this run's app but the ingress."""
    found = {}
    for pid in replica_pids(APP):
        if os.getpid() not in _ancestors(pid):
            continue
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        except OSError:
            continue
        deployment = title.rsplit(":", 1)[1]
        if deployment != INGRESS:
            found[pid] = deployment
    return found


def wait_gone(pids: list[int], timeout_s: float = 120) -> None:
    """Return once none of ``pids`` is running any more.

    Raises:
        RuntimeError: some still are after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not [pid for pid in pids if Path(f"/proc/{pid}").exists()]:
            return
        time.sleep(0.5)
    raise RuntimeError(f"replicas of the previous app still ran after {timeout_s} s")


_MEMORY = {"Rss": "rss_mb", "Pss": "pss_mb", "Pss_File": "pss_file_mb"}


def memory_mb(pids: list[int]) -> dict[str, float]:
    """Resident (RSS) and proportional (PSS: shared pages split between their users) memory
    of ``pids`` together, in MB, and the file-backed part of the PSS (weights memory-mapped
    from safetensors files: only the pages touched are resident)."""
    totals = dict.fromkeys(_MEMORY.values(), 0.0)
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            key, _, value = line.partition(":")
            if key in _MEMORY:
                totals[_MEMORY[key]] += int(value.split()[0]) / 1024
    return totals


def mem_available_mb() -> float:
    """The kernel's estimate of memory available to new processes, in MB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/meminfo has no MemAvailable")


def _metrics_url() -> str:
    import ray

    node = ray._private.worker._global_node  # the local node this process started
    return f"http://{node.node_ip_address}:{node.metrics_export_port}/metrics"


def settle_metrics() -> None:
    """Wait until every replica has exported what it counted so far (each process exports
    its metrics every ``metrics_report_interval_ms``)."""
    import ray

    time.sleep(ray._config.metrics_report_interval_ms() / 1000 + 1)


def pool_metrics(pool: str) -> dict[tuple[str, str, str], float]:
    """(metric, member, process) → value of the pool replicas' counters: ``loads``
    (succeeded) and ``unloads``."""
    with urllib.request.urlopen(_metrics_url(), timeout=10) as response:
        text = response.read().decode()
    found = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match or match.group(1) not in _POOL_METRICS:
            continue
        labels = dict(_LABEL.findall(match.group(2)))
        member = labels.get("model", "").removeprefix(f"{pool}/")
        if labels.get("outcome", "ok") != "ok" or member == labels.get("model"):
            continue  # a failed load, or another pool's member
        key = (_POOL_METRICS[match.group(1)], member, labels.get("WorkerId", ""))
        found[key] = float(match.group(3))
    return found


def metrics_growth(before: dict[tuple[str, str, str], float],
                   after: dict[tuple[str, str, str], float], metric: str) -> int:
    """How much ``metric`` grew from ``before`` to ``after``, over every member and process
    (series of processes gone since are left out, not subtracted)."""
    return round(sum(value - before.get(key, 0.0) for key, value in after.items()
                     if key[0] == metric))


def exports_pending(pool: str) -> float:
    """Members the pool's replicas hold that still wait for their ONNX export (engine onnx),
    as last exported (a replica that has exported none yet reports nothing)."""
    with urllib.request.urlopen(_metrics_url(), timeout=10) as response:
        text = response.read().decode()
    pending = 0.0
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match.group(1) == "ray_nlp_pool_models_exporting" and \
                dict(_LABEL.findall(match.group(2))).get("pool") == pool:
            pending += float(match.group(3))
    return pending


def wait_exported(pool: str, timeout_s: float = 900) -> float:
    """Wait until no member of ``pool`` waits for its ONNX export; returns the seconds
    waited.

    Raises:
        RuntimeError: some still do after ``timeout_s``.
    """
    started = time.monotonic()
    settle_metrics()
    while exports_pending(pool) > 0:
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"ONNX exports of pool {pool} still pending after {timeout_s} s")
        time.sleep(2)
    return time.monotonic() - started
