"""Processes the harness starts, waits for, stops or finds; the standard library only, so
``bench.infinity`` can use it too."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def cmdlines() -> Iterator[tuple[int, str]]:
    """(pid, command line with its NUL separators) of every process that can be read."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        yield int(proc.name), cmdline


def wait_http(url: str, process: subprocess.Popen, timeout_s: float = 180) -> None:
    """Return once ``url`` answers a GET.

    Raises:
        RuntimeError: ``process`` exited first, or ``timeout_s`` passed.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=5):
                return
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer in {timeout_s} s")


def stop_group(process: subprocess.Popen, timeout_s: float = 30) -> None:
    """SIGTERM the process group of ``process`` (started with ``start_new_session=True``, so
    its pgid is its pid), wait up to ``timeout_s`` s, then SIGKILL it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout_s)


def log_tail(path: Path | None, lines: int = 40) -> str:
    """The last ``lines`` lines of a server's log ("" if there is none)."""
    if path is None:
        return ""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def venv_env() -> dict[str, str]:
    """The caller's environment minus what would leak the main Python into a venv."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if k not in drop}


def install_venv(name: str, venv: Path, pins: tuple[str, ...], check: str, stamp: str) -> Path:
    """Create ``venv`` and pip-install ``pins`` into it, then run ``check`` (Python code) in
    it, unless its ``stamp`` file says these pins are installed already. Progress goes to
    stdout, pip's output to ``<venv parent>/<name>-install.log``.

    Returns the venv's python.

    Raises:
        RuntimeError: a step failed (with the log's tail).
    """
    import sys

    python = Path(venv) / "bin" / "python"
    stamp_path, wanted = Path(venv) / stamp, "\n".join(pins) + "\n"
    if python.exists() and stamp_path.exists() and stamp_path.read_text() == wanted:
        return python
    log = Path(venv).parent / f"{name}-install.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    steps = [] if python.exists() else [
        ("creating virtualenv", [sys.executable, "-m", "venv", str(venv)])]
    steps += [(f"pip-installing {pins[1]} (+{len(pins) - 2} pins)",
               [str(python), "-m", "pip", "install", "--disable-pip-version-check", *pins]),
              ("checking imports", [str(python), "-c", check])]
    with open(log, "w") as out:
        for what, command in steps:
            print(f"{name}: {what} in {venv} (log: {log})", flush=True)
            out.write(f"$ {' '.join(command)}\n")
            out.flush()
            code = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT,
                                   env=venv_env())
            if code != 0:
                raise RuntimeError(f"{name} install failed while {what} (exit {code}); "
                                   f"log {log}:\n{log_tail(log)}")
    stamp_path.write_text(wanted)
    print(f"{name}: installed in {time.monotonic() - started:.0f}s", flush=True)
    return python
