"""Files that hold a secret or the store: mode 0600 in a 0700 folder, whatever the umask.

* ``private_dir(path)`` -- create ``path`` (and missing parents) and make it 0700.
* ``write_private(path, text)`` -- write ``text`` atomically (a scratch file, then a rename),
  the file 0600 from the moment it exists; an existing file's looser mode is not kept.
* ``make_private(path)`` -- chmod an existing file to 0600 (the store and its -wal/-shm).
* ``exposed(paths)`` -- those of ``paths`` that others (group or world) may read, with their
  mode: what ``gateway run`` warns about.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

__all__ = ["exposed", "make_private", "private_dir", "write_private"]


def private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner can enter (created if missing)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if stat.S_IMODE(path.stat().st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


def write_private(path: Path, text: str | bytes) -> None:
    """Write ``text`` to ``path`` atomically, readable by the owner only."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # a leftover scratch file may have had another mode
        data = text.encode("utf-8") if isinstance(text, str) else text
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def make_private(path: Path) -> None:
    """chmod 0600 if ``path`` exists and is looser (files of other owners are left alone)."""
    with contextlib.suppress(FileNotFoundError, PermissionError):
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            os.chmod(path, 0o600)


def exposed(paths: Iterable[Path]) -> list[tuple[Path, int]]:
    """(path, mode) of each existing file or folder in ``paths`` that group or others may
    read (or enter)."""
    out = []
    for path in paths:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            out.append((path, mode))
    return out
