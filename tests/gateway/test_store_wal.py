"""The store's WAL: a store that defers its checkpoints has its WAL copied into the database
file from another thread (``Checkpointer``), and its WAL restarts instead of growing; a
durable transaction commits with the WAL synced (``synchronous=FULL``), the others with
``NORMAL``."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from gateway.store.checkpointer import Checkpointer
from gateway.store.core import Store

T = dt.datetime(2024, 6, 3, 6, 0, tzinfo=dt.UTC)


def _write(store: Store, mib: int) -> None:
    """About ``mib`` MiB of audit rows, one transaction per MiB."""
    for _ in range(mib):
        with store.transaction():
            for _ in range(256):
                store.audit(T, "test", "fill", blob="x" * 4000)


def _wait(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _holds_still(path: Path, polls: int = 4):
    """A condition for ``_wait``: true once ``path``'s size was the same ``polls`` times."""
    seen: list[int] = []

    def still() -> bool:
        seen.append(path.stat().st_size)
        return len(seen) >= polls and len(set(seen[-polls:])) == 1

    return still


def test_a_checkpointer_copies_the_wal_and_lets_it_restart(tmp_path: Path) -> None:
    db = tmp_path / "g.sqlite"
    wal = Path(f"{db}-wal")
    with Store(db) as store:
        store.defer_checkpoints()
        checkpointer = Checkpointer(db, every_s=0.05)
        checkpointer.start()
        try:
            _write(store, 8)
            assert _wait(lambda: db.stat().st_size > 8 * 2**20)  # the pages reached the file
            # ... all of them: the size holds still once a checkpoint copied the last frame (on
            # a loaded box the next write began mid-checkpoint and the WAL grew on: 17.6 MB)
            assert _wait(_holds_still(db))
            _write(store, 8)  # after a complete checkpoint the WAL starts from its beginning
            assert _wait(lambda: db.stat().st_size > 16 * 2**20)
            assert wal.stat().st_size < 14 * 2**20
        finally:
            checkpointer.stop()


def test_without_a_checkpointer_a_deferring_store_leaves_its_pages_in_the_wal(
        tmp_path: Path) -> None:
    db = tmp_path / "g.sqlite"
    with Store(db) as store:
        store.defer_checkpoints()
        _write(store, 8)
        time.sleep(0.3)
        assert db.stat().st_size < 2**20
        assert Path(f"{db}-wal").stat().st_size > 8 * 2**20


def test_a_durable_transaction_commits_with_a_synced_wal_and_leaves_normal_behind(
        tmp_path: Path) -> None:
    with Store(tmp_path / "g.sqlite") as store:
        levels = []
        for durable in (False, True, False):
            with store.transaction(durable=durable):
                levels.append(store.conn.execute("PRAGMA synchronous").fetchone()[0])
                with store.transaction(durable=not durable):  # joins: the outer one decides
                    levels.append(store.conn.execute("PRAGMA synchronous").fetchone()[0])
        assert levels == [1, 1, 2, 2, 1, 1]  # NORMAL, FULL
        assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 1
