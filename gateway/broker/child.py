"""A child process that the kernel ends when its parent ends.

``die_with_parent`` is a ``preexec_fn`` for ``subprocess.Popen``: it runs in the child between
fork and exec and calls Linux's ``prctl(PR_SET_PDEATHSIG, SIGTERM)``, so the kernel sends the
child SIGTERM when the parent dies, however it dies (SIGKILL, the OOM killer, a crash). If the
parent is already gone by then (it died between fork and prctl), the child ends itself.

The kernel watches the *thread* that forked the child: start such children from a thread that
lives as long as the process (the gateway starts its broker from the main thread).
"""

from __future__ import annotations

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1
# Looked up in the parent, at import: the child between fork and exec only calls it (loading
# a library there could wait forever on a lock another thread of the parent held at fork).
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent(parent_pid: int | None = None) -> None:
    """Ask the kernel for SIGTERM when our parent ends (call in the child, before exec).

    ``functools.partial(die_with_parent, os.getpid())`` as ``preexec_fn`` also covers a parent
    that died before the call."""
    if _prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if parent_pid is not None and os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGTERM)
