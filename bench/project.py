"""This project, started the way ``make serve`` runs it (HAProxy mode) or plain ``serve run``
does (Ray's Python proxy), in this process's own local Ray instance, so the benchmark can
also drive it through a DeploymentHandle."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench.loadgen import Measured
from bench.processes import cmdlines
from serving.haproxy_edge import launcher_path

ROOT = Path(__file__).resolve().parents[1]
APP = "default"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def default_args(config: Path = ROOT / "serve_config.yaml") -> dict:
    """The application ``args`` of a Serve config file (the default: serve_config.yaml)."""
    return yaml.safe_load(config.read_text())["applications"][0]["args"]


class Project:
    """Ray + Serve in HAProxy mode with the app's ``args``; ``deploy`` again to change them."""

    def __init__(self, haproxy: bool = True) -> None:
        self.port = free_port()
        self._haproxy_dir = Path(tempfile.mkdtemp(prefix="hap", dir="/tmp"))
        if haproxy:  # the environment `make serve` uses; HAProxy's side files kept private
            os.environ.update({
                "RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
                "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(self._haproxy_dir / "haproxy.cfg"),
                "RAY_SERVE_HAPROXY_SOCKET_PATH": str(self._haproxy_dir / "admin.sock"),
                "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(self._haproxy_dir),
                "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(self._haproxy_dir / "server-state"),
                "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
                "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
            })
            # Ray starts HAProxy through the launcher that bounds each ingress replica.
            os.environ.setdefault("RAY_SERVE_HAPROXY_BINARY_PATH", launcher_path())
        else:  # what plain `serve run` gets: Ray's Python proxy and Ray's defaults
            for key in [k for k in os.environ if k.startswith("RAY_SERVE_HAPROXY")]:
                del os.environ[key]
            os.environ.pop("RAY_SERVE_ENABLE_HA_PROXY", None)
            os.environ.pop("RAY_SERVE_THROUGHPUT_OPTIMIZED", None)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import ray
        from ray import serve

        ray.init(address="local", include_dashboard=False, log_to_driver=False)
        serve.start(http_options={"host": "127.0.0.1", "port": self.port})
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()

    def deploy(self, args: dict) -> None:
        from ray import serve

        from graphs.app import build_app

        serve.run(build_app(args), name=APP, route_prefix="/")
        self._wait_healthy()

    def _wait_healthy(self, timeout_s: float = 300) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{self.url}/health", timeout=5) as response:
                    if response.status == 200:
                        return
            time.sleep(1)
        raise RuntimeError("the project never became healthy")

    def handle_closed_loop(self, model: str, requests: list[Any], clients: int,
                           duration_s: float, merged: bool = False) -> Measured:
        """``clients`` coroutines calling ``Ingress.infer`` through a DeploymentHandle, each
        call on its own or (``merged``) through ``deployments.client.AppClient``."""
        from ray import serve

        # The handle lives in one event loop that keeps running (its router listens to the
        # controller from there), on a thread of its own.
        handle = serve.get_app_handle(APP)
        future = asyncio.run_coroutine_threadsafe(
            _drive(handle, merged, model, requests, clients, duration_s), self._loop)
        return future.result()

    def stop(self) -> None:
        import ray
        from ray import serve

        asyncio.run_coroutine_threadsafe(serve.shutdown_async(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        ray.shutdown()
        _stop_haproxy(self._haproxy_dir)
        shutil.rmtree(self._haproxy_dir, ignore_errors=True)


async def _drive(handle, merged: bool, model: str, requests: list[Any], clients: int,
                 duration_s: float) -> Measured:
    from deployments.client import AppClient

    # In the loop: a handle made for this loop's router refuses to be used outside one.
    infer = AppClient(handle).infer if merged else handle.infer.remote
    latencies: list[float] = []
    errors: dict[str, int] = {}
    started = time.perf_counter()
    deadline = started + duration_s

    async def client(offset: int) -> None:
        index = offset
        while time.perf_counter() < deadline:
            begin = time.perf_counter()
            try:
                await infer(model, {"inputs": requests[index % len(requests)]})
            except Exception as exc:  # counted, never fatal: the benchmark reports errors
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            latencies.append(time.perf_counter() - begin)
            index += clients

    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.perf_counter() - started
    p50, p95, p99 = (np.percentile(latencies, [50, 95, 99]) * 1e3).tolist()
    return Measured(requests=len(latencies), duration_s=elapsed, errors=errors,
                    p50_ms=p50, p95_ms=p95, p99_ms=p99)


def _stop_haproxy(haproxy_dir: Path) -> None:
    """HAProxy drains for a while after Serve shuts down; stop the one started here."""
    for pid, cmdline in cmdlines():
        if "haproxy" in cmdline and str(haproxy_dir) in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
