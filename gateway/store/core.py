"""The gateway's store: one SQLite file (WAL) holding claims, resolutions, quarantine, source
runs, merged views, the device registry, device streams and the audit log.

``Store`` is the connection (its pragmas, transactions, meta, the gateway's HLC, the audit log)
and, as one handle, the SQL of the modules its tables were split into along their seams:
``gateway.store.inputs`` (``InputStore``: claim sets and resolutions, the merge's inputs),
``gateway.store.views`` (``ViewStore``: the dirty queue and merged views) and
``gateway.store.sources`` (``SourceStore``, ``RunInfo``, ``QuarantineRow``: source runs,
quarantine, source state, the write-back queue). ``DeviceStore`` (``gateway.store.devices``)
is the device side, over a Store. Only the modules of ``gateway/store/`` speak SQL; everything
handed out is a pydantic model or a frozen dataclass.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

import sqlite_utils

from gateway.errors import StoreError
from gateway.private import make_private, private_dir
from gateway.store.checkpointer import DEFERRED_CHECKPOINT_PAGES
from gateway.store.inputs import InputStore
from gateway.store.schema import create
from gateway.store.sources import QuarantineRow, RunInfo, SourceStore
from gateway.store.sql import Transaction, iso
from gateway.store.views import ViewStore
from sync.hlc import Hlc, tick

__all__ = ["QuarantineRow", "RunInfo", "Store"]

log = logging.getLogger(__name__)


class Store(InputStore, ViewStore, SourceStore):
    """The gateway's SQLite store. Not thread-safe: one Store per thread (WAL lets them share
    the file)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rules_cache: dict[str, tuple[dict[str, str], dict[str, dict[str, Any]]]] = {}
        """driver -> (rules texts, parsed) of the route ``DeviceStore.route_rules`` last read."""
        try:
            _private_file(self.path)
            conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None,
                                   check_same_thread=False)
            self.conn = conn
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA cache_size=-32768")  # 32 MiB: big runs stay off the disk
            conn.execute("PRAGMA foreign_keys=ON")
            # a checkpoint every 64 MiB of WAL, not every 4 MiB (SQLite's default): a refresh
            # batch writes each changed view twice (view, changelog), and a checkpoint after
            # nearly every batch cost a third of its COMMIT time (bench_refresh, batch 500,
            # when the view was written three times: COMMIT 94 -> 63 us per change); the file
            # is cut back to 64 MiB after each checkpoint. The gateway's service checkpoints
            # from another thread (``Checkpointer``, ``defer_checkpoints``).
            conn.execute("PRAGMA wal_autocheckpoint=16384")
            conn.execute("PRAGMA journal_size_limit=67108864")
            # sqlite-utils for the schema, its migration and the listings (few rows, optional
            # filters); the hot paths (claim sets, views, streams) stay on raw sqlite3
            # statements: see ``runs.write_claim_sets`` (executemany 2.1x faster per row than
            # sqlite-utils' insert_all)
            self.db = sqlite_utils.Database(conn, recursive_triggers=False,
                                            execute_plugins=False)
            create(self.db)
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: {exc}") from None

    def defer_checkpoints(self) -> None:
        """Leave the WAL's checkpoints to a ``Checkpointer`` on another connection; this one
        checkpoints itself only past ``DEFERRED_CHECKPOINT_PAGES`` (the checkpointer fell
        behind, or stopped)."""
        self.conn.execute(f"PRAGMA wal_autocheckpoint={DEFERRED_CHECKPOINT_PAGES}")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transactions -------------------------------------------------------------------

    def transaction(self, *, durable: bool = False) -> Transaction:
        """``with store.transaction():`` — BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error.

        The store commits with ``synchronous=NORMAL``: a COMMIT survives the process, and the
        WAL is synced at checkpoints. ``durable=True`` also syncs it at this COMMIT, so it
        survives a power cut: for what the gateway acknowledges (a driver's event, a dispatch
        command), after which the sender forgets it. Inside another transaction it joins it
        (the outer one commits, as it was asked to)."""
        return Transaction(self.conn, durable, self.path)

    # --- meta and clock -----------------------------------------------------------------

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    def next_hlc(self, now: _dt.datetime, node: str = "gateway") -> str:
        """The gateway's next HLC stamp, persisted so it never repeats across restarts."""
        text = self.meta("hlc")
        clock = Hlc.parse(text) if text else Hlc.zero(node)
        stamp = tick(clock, int(now.timestamp() * 1000))
        self.set_meta("hlc", str(stamp))
        return str(stamp)

    def audit(self, now: _dt.datetime, actor: str, action: str, **detail: Any) -> None:
        self.conn.execute(
            "INSERT INTO audit(at, actor, action, detail) VALUES(?,?,?,?)",
            (iso(now), actor, action, json.dumps(detail, default=str)),
        )

    def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT at, actor, action, detail FROM audit ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [{"at": a, "actor": b, "action": c, "detail": json.loads(d)} for a, b, c, d in rows]


def _private_file(path: Path) -> None:
    """The store's file 0600 (its folder 0700 when this creates it), before SQLite opens it:
    SQLite gives the -wal and -shm files the database file's mode. Files left looser by an
    older gateway are tightened."""
    if not path.parent.exists():
        private_dir(path.parent)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        make_private(path.with_name(name))
