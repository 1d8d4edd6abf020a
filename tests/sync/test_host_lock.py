"""sync.host.lock: one process per store; the kernel frees the lock however its holder ends."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sync.host.lock import LockHeld, StoreLock

HOLD = """
import sys, time
from pathlib import Path
from sync.host.lock import StoreLock
StoreLock(Path(sys.argv[1]), holder="agent run").acquire()
print("held", flush=True)
time.sleep(60)
"""


def _holder(db: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(db)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    with proc.stdout:
        assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_holder_is_told_who_holds_it_and_since_when(tmp_path: Path) -> None:
    db = tmp_path / "tab.sqlite"
    holder = _holder(db)
    try:
        with pytest.raises(LockHeld) as refused:
            StoreLock(db, holder="agent run").acquire()
        message = str(refused.value)
        assert "\n" not in message
        assert f"agent run (pid {holder.pid}, since " in message
        assert str(db) in message and "tab.sqlite.lock" in message
    finally:
        holder.kill()
        holder.wait()


def test_a_holder_killed_with_sigkill_leaves_the_lock_free(tmp_path: Path) -> None:
    db = tmp_path / "gateway.sqlite"
    holder = _holder(db)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    when = dt.datetime(2026, 12, 1, 21, 30, tzinfo=dt.UTC)
    with StoreLock(db, holder="gateway run", now=when) as lock:
        text = lock.path.read_text()
        assert f'"pid": {os.getpid()}' in text and "2026-12-01T21:30:00+00:00" in text
    assert lock.path.read_text() == ""  # released: nobody is named as holding it
