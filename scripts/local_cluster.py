"""A real multi-node Ray cluster on one machine, for tests and trials.

Starts a head node (``ray start --head --block``) and worker nodes
(``ray start --address=... --block``) as subprocesses, each with its own CPU share, custom
resources, ``--temp-dir`` and free ports, with token authentication on
(``RAY_AUTH_MODE=token`` and a fresh ``RAY_AUTH_TOKEN`` scoped to this cluster). On exit it
stops exactly what it started: the process group of each ``ray start`` (SIGTERM, then
SIGKILL), then any leftover process of this cluster, found by its private temp dir. It never
runs a machine-wide ``ray stop`` and never touches another Ray instance.

    python scripts/local_cluster.py      # start one, print how to reach it, Ctrl-C stops it
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ray_cli(name: str) -> str:
    """The ``ray``/``serve`` script of this Python's Ray (next to the interpreter, else on
    PATH: a virtualenv with system site-packages keeps Ray's scripts outside its bin/)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name) or str(beside)


@dataclass(frozen=True)
class NodeSpec:
    """One node: its logical CPUs and custom resources (``ray start --resources``)."""

    num_cpus: int
    resources: dict[str, float] = field(default_factory=dict)
    object_store_mb: int = 256  # Ray's default is 30% of RAM per node


@dataclass
class LocalCluster:
    """A running cluster: where to reach it and the environment its clients need."""

    gcs_address: str  # for ray.init(address=...) and `ray start --address`
    dashboard_url: str  # for `serve deploy/status --address` and the REST APIs
    token: str
    root: Path  # every node's --temp-dir lives under it
    processes: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def client_env(self, **extra: str) -> dict[str, str]:
        """Environment of a client process (`serve deploy`, a handle driver): token auth on,
        this cluster's token, no inherited RAY_ADDRESS."""
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token, **extra)
        return env

    def api(self, path: str, timeout: float = 30) -> dict:
        """GET a dashboard REST endpoint with the token, as Ray's own clients send it."""
        response = httpx.get(f"{self.dashboard_url}{path}", timeout=timeout,
                             headers={"Authorization": f"Bearer {self.token}"})
        response.raise_for_status()
        return response.json()

    def nodes(self) -> list[dict]:
        """Alive nodes: ``node_id``, ``is_head_node``, ``resources_total``."""
        nodes = self.api("/api/v0/nodes?limit=100&detail=true")["data"]["result"]["result"]
        return [node for node in nodes if node["state"] == "ALIVE"]

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-chars:]}"
                         for log in self.logs if log.exists())


def _node_ports() -> list[str]:
    """Flags that move every fixed port of a node off Ray's defaults."""
    return [
        f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
        f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
    ]


def _start_node(cluster: LocalCluster, name: str, spec: NodeSpec, flags: list[str],
                env: dict[str, str]) -> None:
    temp_dir = cluster.root / name
    temp_dir.mkdir()
    log_path = cluster.root / f"{name}.log"
    command = [ray_cli("ray"), "start", "--block", f"--temp-dir={temp_dir}",
               f"--num-cpus={spec.num_cpus}", f"--resources={json.dumps(spec.resources)}",
               f"--object-store-memory={spec.object_store_mb * 1024 * 1024}",
               "--num-gpus=0", "--node-ip-address=127.0.0.1", "--disable-usage-stats",
               *flags, *_node_ports()]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    cluster.processes.append(process)
    cluster.logs.append(log_path)


def _wait_for_nodes(cluster: LocalCluster, count: int, timeout_s: float) -> None:
    deadline, last_error = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        for process, log in zip(cluster.processes, cluster.logs, strict=True):
            if process.poll() is not None:
                text = log.read_text(errors="replace")
                errors = [line for line in text.splitlines() if "ERROR" in line or "rror:" in line]
                raise RuntimeError(f"`ray start` exited ({process.returncode}):\n"
                                   + "\n".join(errors[-20:]) + f"\n...\n{text[-2000:]}")
        try:
            if len(cluster.nodes()) >= count:
                return
        except (httpx.HTTPError, KeyError) as exc:
            last_error = exc
        time.sleep(1)
    raise TimeoutError(f"{count} nodes not up in {timeout_s}s ({last_error})\n"
                       f"{cluster.log_tail()}")


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)  # start_new_session: the group id is the pid


def _leftovers(root: Path) -> list[int]:
    """PIDs of processes whose command line names this cluster's private temp dir (Ray's
    raylet, GCS, agents and workers all carry a path under it)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(root) in cmdline:
            pids.append(int(proc.name))
    return pids


def stop(cluster: LocalCluster, timeout_s: float = 30) -> None:
    """Stop what this cluster started: workers first, then the head; SIGTERM to each
    `ray start` process, SIGKILL to its process group after ``timeout_s`` (and to anything
    left in the group), then leftovers found by the temp dir."""
    for process in reversed(cluster.processes):
        # The `ray start` process alone: its handler stops raylet, GCS and agents in order
        # (a few seconds); SIGTERM to the whole group at once leaves the GCS waiting ~50 s.
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=10)
        _signal_group(process, signal.SIGKILL)  # children that ignored SIGTERM
    deadline = time.monotonic() + 10
    while (pids := _leftovers(cluster.root)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL if time.monotonic() > deadline - 5 else signal.SIGTERM)
        time.sleep(0.5)


@contextlib.contextmanager
def local_cluster(head: NodeSpec, workers: list[NodeSpec], env: dict[str, str] | None = None,
                  timeout_s: float = 120) -> Iterator[LocalCluster]:
    """Start a head node and ``workers`` on this machine; stop them on exit, whatever
    happened.

    Args:
        head: the head node's CPUs and custom resources.
        workers: one spec per worker node, joined with ``ray start --address``.
        env: extra environment for every node (their replicas inherit it).
        timeout_s: how long to wait for every node to register.

    Yields:
        The running :class:`LocalCluster`.
    """
    # A short path: Ray's Unix sockets live under it (at most 107 characters).
    root = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
    gcs_port, dashboard_port = free_port(), free_port()
    cluster = LocalCluster(
        gcs_address=f"127.0.0.1:{gcs_port}", dashboard_url=f"http://127.0.0.1:{dashboard_port}",
        token=secrets.token_hex(16), root=root,
    )
    node_env = cluster.client_env(RAY_USAGE_STATS_ENABLED="0", **(env or {}))
    try:
        _start_node(cluster, "head", head, [
            "--head", f"--port={gcs_port}", "--include-dashboard=true",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
            f"--ray-client-server-port={free_port()}",
        ], node_env)
        _wait_for_nodes(cluster, 1, timeout_s)
        for index, worker in enumerate(workers):
            _start_node(cluster, f"worker{index}", worker,
                        [f"--address={cluster.gcs_address}"], node_env)
        _wait_for_nodes(cluster, 1 + len(workers), timeout_s)
        yield cluster
    finally:
        stop(cluster)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    """Start a head (2 CPUs, ``head_node``) and one worker (2 CPUs, ``model_node``) and
    wait for Ctrl-C."""
    with local_cluster(NodeSpec(2, {"head_node": 4}), [NodeSpec(2, {"model_node": 4})]) as c:
        print(f"export RAY_AUTH_MODE=token RAY_AUTH_TOKEN={c.token}\n"
              f"serve deploy serve_config.yaml --address {c.dashboard_url}\n"
              f"serve status --address {c.dashboard_url}\n"
              f"# a Python driver: ray.init(address='{c.gcs_address}')\n"
              "Ctrl-C stops the cluster.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while all(process.poll() is None for process in c.processes):
                time.sleep(1)


if __name__ == "__main__":
    main()
