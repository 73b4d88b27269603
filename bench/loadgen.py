"""Load generators: ``wrk`` for closed-loop HTTP load, an asyncio client for open-loop load.

``wrk`` (C, one thread) keeps the load generator's share of the two cores small; its CPU
time is measured and reported with every result either way.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REFUSALS = (429, 503)  # explicit "retry later" answers (Retry-After)

_LUA = """
local bodies = {%(bodies)s}
local paths = {%(paths)s}
local headers = {["Content-Type"] = "application/json"}
local i = 0
request = function()
  i = i + 1
  return wrk.format("POST", paths[(i %% #paths) + 1], headers, bodies[(i %% #bodies) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  local f = io.open(%(out)s, "w")
  f:write(string.format(
    '{"requests": %%d, "duration_s": %%f, "connect": %%d, "read": %%d, "write": %%d, ' ..
    '"status": %%d, "timeout": %%d, "p50_ms": %%f, "p95_ms": %%f, "p99_ms": %%f}',
    summary.requests, summary.duration / 1e6, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50) / 1e3, latency:percentile(95) / 1e3,
    latency:percentile(99) / 1e3))
  f:close()
end
"""


@dataclass
class Measured:
    """What one load run saw."""

    requests: int  # answered (any status)
    duration_s: float
    errors: dict[str, int] = field(default_factory=dict)  # non-2xx, timeouts, resets...
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    loadgen_cpu_share: float = 0.0  # of all cores, over the run
    # Open loop only: requests sent, 2xx answers and their p50/p99, Retry-After values seen.
    detail: dict = field(default_factory=dict)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def closed_loop(
    url: str, path: str, bodies: list[str], clients: int, duration_s: float,
    timeout_s: float = 60, paths: list[str] | None = None,
) -> Measured:
    """``clients`` connections, each sending its next request as soon as it has an answer.

    ``paths``: the route of each request in turn, cycled like ``bodies`` (e.g. a fixed
    sequence of model names drawn from a distribution); default ``path`` for all.
    """
    with tempfile.TemporaryDirectory(prefix="bench-wrk") as tmp:
        out, script = Path(tmp) / "out.json", Path(tmp) / "load.lua"
        script.write_text(_LUA % {
            "bodies": ", ".join(_lua_string(body) for body in bodies),
            "paths": ", ".join(_lua_string(p) for p in (paths or [path])),
            "out": _lua_string(str(out)),
        })
        command = ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(duration_s))}s",
                   f"--timeout={int(timeout_s)}s", "-s", str(script), url]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        output = process.stdout.read().decode(errors="replace")
        if process.returncode != 0 or not out.exists():
            raise RuntimeError(f"wrk failed ({process.returncode}): {output[-2000:]}")
        data = json.loads(out.read_text())
    cpu = usage.ru_utime + usage.ru_stime
    errors = {key: data[key] for key in ("connect", "read", "write", "status", "timeout")
              if data[key]}
    return Measured(
        requests=data["requests"], duration_s=data["duration_s"], errors=errors,
        p50_ms=data["p50_ms"], p95_ms=data["p95_ms"], p99_ms=data["p99_ms"],
        loadgen_cpu_share=cpu / (data["duration_s"] * (os.cpu_count() or 1)),
    )


def wait_drained(url: str, path: str, body: str, fast_s: float = 1.0,
                 timeout_s: float = 180) -> float | None:
    """Seconds until a lone request is answered (2xx) within ``fast_s`` again; None if it
    never was.

    Clients may be gone while a server still answers their requests (a thread pool or a
    batch queue does not know they left): that backlog must not load what is measured next.
    """
    import urllib.request

    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        request = urllib.request.Request(url + path, data=body.encode(),
                                         headers={"Content-Type": "application/json"})
        sent = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                if response.status < 300 and time.monotonic() - sent < fast_s:
                    return time.monotonic() - started
        except OSError:  # refused (429/503: HTTPError is an OSError) or timed out: still busy
            pass
        time.sleep(1)
    return None


def open_loop(url: str, path: str, bodies: list[str], rate: float, duration_s: float) -> Measured:
    """Requests sent at a fixed rate whatever the answers' pace (``bench/openloop.py``)."""
    with tempfile.TemporaryDirectory(prefix="bench-open") as tmp:
        spec, out = Path(tmp) / "bodies.json", Path(tmp) / "out.json"
        spec.write_text(json.dumps(bodies))
        subprocess.run(
            [sys.executable, "-m", "bench.openloop", "--url", url + path, "--rate", str(rate),
             "--duration", str(duration_s), "--bodies", str(spec), "--out", str(out)],
            check=True, cwd=Path(__file__).resolve().parents[1],
        )
        data = json.loads(out.read_text())
    detail = data.pop("detail")
    return Measured(**data, detail=detail)
