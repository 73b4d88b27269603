"""``transformers-serve run`` (serving/cli_run.py), what ``make serve`` runs: the config
and the ports are checked before Ray starts, and stop signals become one SIGINT for
``serve run`` (Serve's clean shutdown), escalated if it does not end. No Ray cluster: the
supervisor is tested on small stand-in children."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from serving import cli
from serving.cli_run import Listener, listeners, unavailable

ROOT = Path(__file__).resolve().parents[2]
HAPROXY_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1"}


def _config(tmp_path: Path, change=None, port: int = 8000) -> Path:
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    config["http_options"]["port"] = port
    if change:
        change(config)
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _args(config: dict) -> dict:
    return config["applications"][0]["args"]


def _mistype_an_arg(config: dict) -> None:
    _args(config)["models"][0]["max_batch_szie"] = 8


def _mistype_http_options(config: dict) -> None:
    config["http_option"] = config.pop("http_options")


def _environ() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_ADDRESS": "local"}


@pytest.mark.parametrize("command,change,field", [
    ("make", _mistype_an_arg, "max_batch_szie"),
    ("cli", _mistype_http_options, "http_option"),
], ids=["make-serve-unknown-arg", "cli-run-unknown-serve-field"])
def test_a_config_with_an_unknown_field_fails_before_ray_starts(tmp_path, command, change,
                                                                field):
    path = _config(tmp_path, change)
    argv = (["make", "-s", "-o", ".install-stamp", "serve", f"PYTHON={sys.executable}",
             f"SERVE_CONFIG={path}"] if command == "make"
            else [sys.executable, "-m", "serving.cli", "run", str(path)])
    started = time.monotonic()
    result = subprocess.run(argv, cwd=ROOT, env=_environ(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert time.monotonic() - started < 60
    assert f"{field}: " in result.stderr and "not started" in result.stderr
    assert "Started a local Ray instance" not in result.stdout + result.stderr


def test_a_bare_app_config_is_not_a_serve_config(tmp_path, capsys):
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump(_args(yaml.safe_load((ROOT / "serve_config.yaml")
                                                        .read_text()))))
    assert cli.main(["run", str(path)]) == 1
    assert "not a Serve config" in capsys.readouterr().err


def test_listeners_are_the_http_port_and_in_haproxy_mode_its_side_ports():
    config = {"http_options": {"host": "0.0.0.0", "port": 9000}}
    assert listeners(config, {}) == [Listener("0.0.0.0", 9000, "http_options.port")]
    assert listeners({}, {**HAPROXY_ENV, "RAY_SERVE_HAPROXY_METRICS_PORT": "9999"}) == [
        Listener("127.0.0.1", 8000, "http_options.port"),
        Listener("127.0.0.1", 8404, "RAY_SERVE_HAPROXY_STATS_PORT"),
        Listener("127.0.0.1", 9999, "RAY_SERVE_HAPROXY_METRICS_PORT")]


@pytest.mark.parametrize("busy", ["http_options.port", "RAY_SERVE_HAPROXY_STATS_PORT"])
def test_ports_in_use_are_refused_before_ray_starts(tmp_path, monkeypatch, capsys, busy):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        free = _free_port()
        http, stats = (port, free) if busy == "http_options.port" else (free, port)
        monkeypatch.setenv("RAY_SERVE_ENABLE_HA_PROXY", "1")
        monkeypatch.setenv("RAY_SERVE_HAPROXY_STATS_PORT", str(stats))
        monkeypatch.setenv("RAY_SERVE_HAPROXY_METRICS_PORT", str(_free_port()))
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        assert unavailable([Listener("127.0.0.1", free, "x")]) == []
        assert cli.main(["run", str(_config(tmp_path, port=http))]) == 1
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port} ({busy}): in use" in err and "not started" in err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the supervisor, on stand-in children ------------------------------------------------

# Reports whether it leads its own session, then waits; Ctrl-C (KeyboardInterrupt) ends it
# cleanly, as `serve run` does after serve.shutdown().
CHILD = """
import os, signal, sys, time
if sys.argv[1] == "ignore-sigint":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
try:
    print("own-session" if os.getsid(0) == os.getpid() else "shared-session", flush=True)
    time.sleep(60)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""
SUPERVISOR = """
import sys
from serving.cli_run import Supervisor
child = [sys.executable, "-c", sys.argv[1], sys.argv[2]]
sys.exit(Supervisor(child, stop_timeout_s=float(sys.argv[3])).run())
"""


def _supervise(child_mode: str, stop_timeout_s: float, ignore_sigint: bool = False):
    """The supervisor with a stand-in child, started as a non-interactive shell starts a
    background job when ``ignore_sigint``: with SIGINT ignored."""
    def ignore() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    process = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, CHILD, child_mode, str(stop_timeout_s)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=ignore if ignore_sigint else None)
    assert process.stdout.readline().strip() == "own-session"
    return process


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_stop_signal_becomes_one_sigint_even_in_a_background_job(sig):
    process = _supervise("handle-sigint", stop_timeout_s=30, ignore_sigint=True)
    process.send_signal(sig)
    out, err = process.communicate(timeout=20)
    assert out.strip() == "interrupted"
    assert process.returncode == 0
    assert "shutting Serve down" in err


def test_a_child_that_does_not_stop_gets_sigterm_after_the_stop_timeout():
    process = _supervise("ignore-sigint", stop_timeout_s=0.5)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=20)
    assert process.returncode == 128 + signal.SIGTERM
    assert time.monotonic() - started < 10
    assert "sending SIGTERM to serve run" in err


def test_a_second_signal_forces_the_stop():
    process = _supervise("ignore-sigint", stop_timeout_s=60)
    process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=20)
    assert process.returncode == 128 + signal.SIGTERM


def test_the_child_entry_point_is_serve_run():
    result = subprocess.run([sys.executable, "-m", "serving.cli_run", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Usage: serve run" in result.stdout
