"""Dying with the parent process (Linux PR_SET_PDEATHSIG; elsewhere nothing happens).

Used for the embedded redis-server (a preexec hook) and for codepool's own children.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _libc_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    return prctl


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> None:
    """Have the kernel send ``sig`` to this process when its parent dies (Linux only).

    The kernel sends it when the parent *thread* that forked us exits, so the parent must
    fork from a thread that lives as long as it does (the main thread, in codepool).
    """
    prctl = _libc_prctl()
    if prctl is None:
        return
    prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    # If the parent died before prctl ran, no signal will ever come: send it now.
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), sig)


def pdeathsig_preexec(parent_pid: int) -> Callable[[], None] | None:
    """A preexec_fn: SIGTERM the child (redis-server) when its parent dies.

    Without it a SIGKILLed codepool would leave redis-server running, holding the data
    directory (and on TCP, a port) until someone notices. SIGTERM rather than SIGKILL so
    redis still fsyncs its AOF (and writes a final RDB) on the way out.
    """
    # Resolve prctl in the parent: dlopen() between fork and exec is not async-signal-safe.
    prctl = _libc_prctl()
    if prctl is None:
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent_pid:
            os._exit(1)  # the parent is already gone: never start

    return preexec
