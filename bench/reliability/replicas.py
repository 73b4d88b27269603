"""The app's replica processes, found by their titles: their PIDs and resident memory."""

from __future__ import annotations

import threading
from pathlib import Path

from bench.processes import cmdlines


def replica_pids(app: str, deployment: str | None = None) -> list[int]:
    """PIDs of the live replica processes of ``deployment`` (every deployment of ``app``
    when None); Ray titles them ``ray::ServeReplica:<app>:<deployment>``."""
    prefix = f"ray::ServeReplica:{app}:" + (deployment or "")
    pids = []
    for pid, cmdline in cmdlines():
        title = cmdline.split("\0")[0]
        if deployment is None and title.startswith(prefix):
            pids.append(pid)
        elif title == prefix or title.startswith(prefix + "."):
            pids.append(pid)
    return pids


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


class MemorySampler:
    """Peak resident memory of the app's replica processes, sampled twice a second."""

    def __init__(self, app: str) -> None:
        self.app, self.peak_mb = app, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now_mb(self) -> float:
        """The replicas' resident memory now, in MB."""
        return _rss_mb(replica_pids(self.app))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self.now_mb())
            self._stop.wait(0.5)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
