"""One process per store: an OS file lock beside the SQLite file.

(In ``sync.host``: the gateway, the agent and ``crossdock tablet`` take the same lock, and the
fixed layout has no package below all three but ``sync``, whose other modules do no I/O.)

``StoreLock(db_path, holder="gateway run")`` takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on
``<db>.lock`` (e.g. ``gateway.sqlite.lock``) and writes who holds it: pid, start time (ISO 8601
with offset) and what it is. The kernel drops the lock when the process ends, however it ends
(SIGKILL included), so a stale lock file never blocks a restart; only a live holder does. A
second process gets ``LockHeld``, one line naming the file, the holder's pid, what it is and
since when. Commands that only read the store take no lock and work beside the holder.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
from pathlib import Path
from types import TracebackType
from typing import Self

from sync.errors import CrossdockError


class LockHeld(CrossdockError):
    """Another live process holds the store's lock; ``str()`` says who and since when."""


def lock_path(db_path: Path) -> Path:
    """``gateway.sqlite`` -> ``gateway.sqlite.lock``, beside it."""
    return db_path.with_name(db_path.name + ".lock")


class StoreLock:
    """Held from ``acquire`` (or ``with``) to ``release``; not re-entrant across processes."""

    def __init__(self, db_path: Path, *, holder: str,
                 now: _dt.datetime | None = None) -> None:
        self.path = lock_path(Path(db_path))
        self.holder = holder
        self._now = now
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise CrossdockError(f"lock file {self.path}: cannot open: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = _describe(_read(fd))
            os.close(fd)
            raise LockHeld(f"{self.path.with_suffix('')} is in use by {who}; stop that process "
                           f"first (lock file {self.path})") from None
        now = self._now or _dt.datetime.now().astimezone()
        record = {"pid": os.getpid(), "since": now.isoformat(timespec="seconds"),
                  "holder": self.holder}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # the holder is gone; the next one writes itself
        os.close(fd)  # closing drops the flock

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def try_flock(path: Path) -> int | None:
    """An fd holding an exclusive flock on ``path`` (created 0600), or None when another
    process holds it; closing the fd drops it. (``agent run`` holds ``<db>.run.lock`` so
    that ``agent act`` hands its actions over instead of connecting beside it.)"""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    return fd


def _read(fd: int) -> dict[str, object]:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _describe(record: dict[str, object]) -> str:
    pid = record.get("pid")
    holder = record.get("holder") or "another process"
    since = record.get("since")
    if pid is None:
        return f"{holder} (pid unknown: it is still writing the lock file)"
    return f"{holder} (pid {pid}, since {since})"
