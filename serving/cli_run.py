"""``transformers-serve run CONFIG`` (what ``make serve`` runs): ``serve run CONFIG``,
checked first and stopped cleanly by SIGTERM.

- The config is validated before anything starts (:func:`serving.cli_configs.check_configs`):
  Serve validates an application's ``args`` only in its controller, after Ray has started,
  and then keeps running with the application failed.
- The HTTP port and HAProxy's stats and metrics ports must be free: a server still holding
  them would make the new one wait forever for HAProxy, which cannot bind them.
- ``serve run`` shuts Serve down (``serve.shutdown()``: applications deleted, proxies and
  HAProxy stopped by Serve) on SIGINT only. On SIGTERM it exits at once and leaves the
  teardown to Ray's process killing, which races with the raylet's own exit when the
  whole process group gets the signal. Here SIGTERM, SIGINT and SIGHUP all become one
  SIGINT for ``serve run``; a second signal, or ``--stop-timeout`` seconds, escalate to
  SIGTERM, then to SIGKILL for its process group. (That shutdown takes about 35 s: Ray
  keeps a direct-ingress replica reachable 30 s after it is told to stop; HAProxy and the
  ports go at once.)
- ``serve run`` runs in a session of its own: a terminal's Ctrl-C or a signal to the
  process group reaches this supervisor only, which forwards exactly one SIGINT. SIGINT
  works even where a shell started this in the background with SIGINT ignored, and
  ``serve run`` gets SIGTERM if this supervisor dies (``PR_SET_PDEATHSIG``).

``python -m serving.cli_run ARGS`` is that child: ``serve run ARGS`` tied to its parent.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from serving import capacity
from serving.cli_configs import (
    ConfigFileError,
    check_configs,
    load_apps,
    read_config,
    validate_app,
)
from serving.lifetime import die_with_parent

PROG = "transformers-serve run"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
KILL_AFTER_S = 15.0  # after SIGTERM: Ray's own teardown takes a few seconds


@dataclass(frozen=True)
class Listener:
    """A port the server will listen on, and the setting that chooses it."""

    host: str
    port: int
    setting: str


def listeners(config: dict, environ: dict[str, str]) -> list[Listener]:
    """The ports a Serve config will bind on this machine: HTTP, and in HAProxy mode
    HAProxy's stats and Prometheus ports (bound to the HTTP host by
    transformers-serve-haproxy)."""
    http = config.get("http_options") or {}
    host = str(http.get("host") or "127.0.0.1")
    ports = [Listener(host, int(http.get("port", 8000)), "http_options.port")]
    if environ.get("RAY_SERVE_ENABLE_HA_PROXY", "0") == "1":
        for setting, default in (("RAY_SERVE_HAPROXY_STATS_PORT", 8404),
                                 ("RAY_SERVE_HAPROXY_METRICS_PORT", 9101)):
            ports.append(Listener(host, int(environ.get(setting) or default), setting))
    return ports


def unavailable(ports: list[Listener]) -> list[str]:
    """One line per port that cannot be bound now (in use, or an address not here)."""
    lines = []
    for listener in ports:
        family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As servers do: a port whose old connections linger in TIME_WAIT is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((listener.host, listener.port))
            except OSError as error:
                why = "in use" if error.errno == errno.EADDRINUSE else error.strerror
                lines.append(f"{listener.host}:{listener.port} ({listener.setting}): {why}")
    return lines


class Supervisor:
    """Runs a command in a session of its own; stop signals become SIGINT, then SIGTERM,
    then SIGKILL for the command's process group."""

    def __init__(self, command: list[str], stop_timeout_s: float) -> None:
        self.command, self.stop_timeout_s = command, stop_timeout_s
        self.child: subprocess.Popen | None = None
        self.stage = 0  # signals sent: 0, then SIGINT, SIGTERM, SIGKILL
        self.deadline: float | None = None

    def run(self) -> int:
        """Start the command and wait for it; its exit status (128 + N for signal N)."""
        # Installed first: the child then starts with the default actions (a handled
        # signal is reset by exec, an ignored one would stay ignored).
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        try:
            self.child = subprocess.Popen(self.command, start_new_session=True)
            if self.stage:  # a signal came before the child existed
                self.stage -= 1
                self._escalate()
            while True:
                timeout = 0.5 if self.deadline is None else min(
                    0.5, max(0.0, self.deadline - time.monotonic()))
                try:
                    code = self.child.wait(timeout)
                    return 128 - code if code < 0 else code
                except subprocess.TimeoutExpired:
                    if self.deadline is not None and time.monotonic() >= self.deadline:
                        self._escalate()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if self.stage == 0:
            print(f"{PROG}: {name}: shutting Serve down (up to {self.stop_timeout_s:g} s; "
                  "signal again to force)", file=sys.stderr, flush=True)
        self._escalate()

    def _escalate(self) -> None:
        sig = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)[min(self.stage, 2)]
        self.stage += 1
        self.deadline = time.monotonic() + (
            self.stop_timeout_s if sig == signal.SIGINT else KILL_AFTER_S)
        if self.child is None:
            return
        if self.stage > 1:
            print(f"{PROG}: sending {sig.name} to serve run", file=sys.stderr, flush=True)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if sig == signal.SIGKILL:
                os.killpg(self.child.pid, sig)  # Ray's processes share its group
            else:
                self.child.send_signal(sig)


def serve_run_command(config: Path) -> list[str]:
    """``serve run CONFIG`` as a child that ends with its parent (see module docstring)."""
    return [sys.executable, "-m", "serving.cli_run", str(config)]


def run(options: argparse.Namespace) -> int:
    """Run ``run`` (``config``, ``stop_timeout``); the exit status."""
    if not check_configs([options.config], serve_config=True):
        print(f"{PROG}: not started: fix {options.config} first", file=sys.stderr)
        return 1
    address = os.environ.get("RAY_ADDRESS", "")
    if address in ("", "local"):  # an existing cluster may already serve these ports
        try:
            busy = unavailable(listeners(read_config(options.config), dict(os.environ)))
        except (ConfigFileError, TypeError, ValueError) as error:
            busy = [str(error)]
        if busy:
            print(f"{PROG}: not started: cannot listen on\n"
                  + "".join(f"  {line}\n" for line in busy)
                  + "Is another server running? `ss -ltnp` names the process.",
                  file=sys.stderr)
            return 1
        short = local_shortfalls(options.config, dict(os.environ))
        if short:
            print(f"{PROG}: not started: {options.config} does not fit this machine "
                  f"({os.cpu_count()} CPUs):\n" + "".join(f"  {line}\n" for line in short)
                  + capacity.ADVICE, file=sys.stderr)
            return 1
    sys.stdout.flush()
    return Supervisor(serve_run_command(options.config), options.stop_timeout).run()


def local_shortfalls(path: Path, environ: dict[str, str]) -> list[str]:
    """Why the replicas of the config at ``path`` cannot all start on this machine's CPUs
    (what a local Ray offers; GPUs and custom resources are left to Ray's own check)."""
    if environ.get(capacity.SKIP_ENV) == "1":
        return []
    problems = []
    for app in load_apps(path):
        config, _ = validate_app(app)
        if config is None:
            continue
        keys = {key for group in capacity.replicas(config) for key in group.need}
        node = {**dict.fromkeys(keys, float("inf")), "CPU": float(os.cpu_count() or 1)}
        problems += capacity.shortfalls(config, [node])
    return problems


def _serve_run(argv: list[str]) -> None:
    """The child: ``serve run ARGV``, sent SIGTERM (Ray's quick teardown) if the
    supervisor dies."""
    die_with_parent(signal.SIGTERM, "serve run")
    from ray.serve.scripts import cli

    cli(["run", *argv], prog_name="serve")


if __name__ == "__main__":
    _serve_run(sys.argv[1:])
