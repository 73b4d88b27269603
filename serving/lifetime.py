"""Tie a process's life to its parent's (Linux ``PR_SET_PDEATHSIG``).

Used where a process must not outlive the one that started it, however that one ends
(SIGKILL and crashes included): HAProxy under Ray's HAProxy manager
(serving/haproxy_edge.py) and ``serve run`` under ``transformers-serve run``
(serving/cli_run.py). Imports neither Ray nor FastAPI.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(sig: int = signal.SIGTERM, who: str = "") -> bool:
    """Have the kernel send ``sig`` to this process when its parent exits.

    The setting survives ``exec`` (of anything but a set-user-ID program), so a launcher
    calls it and then ``exec``s the real program. The kernel tracks the parent *thread*
    that forked this process: call it in a child forked from a thread that lives as long
    as the parent does (the main thread, or an event loop's thread).

    Args:
        sig: the signal to receive.
        who: a name for the messages on stderr.

    Returns:
        True if set; False where ``prctl`` is missing (not Linux) or refused.

    Raises:
        SystemExit: the parent had already exited before the setting took effect.
    """
    parent = os.getppid()
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    if prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        print(f"{who}: prctl(PR_SET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}",
              file=sys.stderr)
        return False
    if os.getppid() != parent:
        raise SystemExit(f"{who}: the parent process (pid {parent}) has exited")
    return True
