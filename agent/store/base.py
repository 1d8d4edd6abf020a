"""The tablet store's connection, schema, transaction and meta values (``StoreBase``).

Every table family (``stream``, ``outbox``, ``meta``) derives from ``StoreBase`` and writes
through ``_tx``: one ``BEGIN IMMEDIATE`` per public write, durability chosen per transaction
(see ``agent.store``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Self

import sqlite_utils

from agent.errors import StoreError
from sync.hlc import Hlc
from sync.streams import Receiver

SCHEMA_VERSION = 1
_BUSY_TIMEOUT_S = 10.0


class StoreBase:
    """The connection and what every table family shares."""

    def __init__(self, db: sqlite_utils.Database, path: Path) -> None:
        self._db = db
        self._path = path
        self._durable = True  # the connection's synchronous level: FULL (True) or NORMAL
        self._data_version: int | None = None  # PRAGMA data_version last seen
        self._receiver: Receiver | None = None  # as this Store last committed it; receiver()

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path) -> Self:
        """Open (creating if needed) the store at ``path``."""
        file = Path(path)
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                str(file), timeout=_BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"tablet store {file}: cannot open: {exc}") from None
        try:
            db = sqlite_utils.Database(conn)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            store = cls(db, file)
            store._create()
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"tablet store {file}: not a usable SQLite file: {exc}") from None
        return store

    def close(self) -> None:
        self._db.close()

    @property
    def path(self) -> Path:
        return self._path

    def _create(self) -> None:
        with self._tx():
            db = self._db
            db.table("views").create(
                {"order_id": str, "seq": int, "json": str}, pk="order_id", if_not_exists=True
            )
            db.table("meta").create({"key": str, "value": str}, pk="key", if_not_exists=True)
            db.table("outbox").create(
                {
                    "event_id": str,
                    "created_at": str,
                    "payload": str,
                    "attempts": int,
                    "last_sent_at": str,
                },
                pk="event_id",
                not_null={"created_at", "payload", "attempts"},
                defaults={"attempts": 0},
                if_not_exists=True,
            )
            db.table("local_actions").create(
                {
                    "event_id": str,
                    "order_id": str,
                    "at": str,
                    "acked": int,
                    "view_seen": int,
                    "event": str,
                },
                pk="event_id",
                defaults={"acked": 0, "view_seen": 0},
                if_not_exists=True,
            )
            db.table("local_actions").create_index(["order_id"], if_not_exists=True)
            # added in 0.3.0; a store of 0.2 gets it on open (nothing else changed: schema 1)
            db.table("refused").create(
                {
                    "event_id": str,
                    "order_id": str,
                    "action": str,
                    "event": str,
                    "reason": str,
                    "refused_at": str,
                    "dismissed_at": str,
                    "dismissal_id": str,
                },
                pk="event_id",
                not_null={"order_id", "action", "event", "reason", "refused_at"},
                if_not_exists=True,
            )
            version = self._get("schema")
            if version is None:
                self._put("schema", SCHEMA_VERSION)
            elif version != SCHEMA_VERSION:
                raise StoreError(
                    f"tablet store {self._path}: schema {version} is not {SCHEMA_VERSION}; "
                    "use an agent of the same version or start from a fresh file"
                )

    @contextmanager
    def _tx(self, *, durable: bool = True) -> Iterator[None]:
        """One transaction; ``durable=False`` (stream entries only) commits without fsync."""
        conn = self._db.conn
        try:
            if durable != self._durable:
                conn.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")
                self._durable = durable
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"tablet store {self._path}: cannot begin: {exc}") from None
        try:
            yield
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise StoreError(f"tablet store {self._path}: {exc}") from None
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise StoreError(f"tablet store {self._path}: commit failed: {exc}") from None

    # -- meta --------------------------------------------------------------------------------

    def _get(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return None if row is None else json.loads(row[0])

    def _put(self, key: str, value: Any) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [key, json.dumps(value)],
        )

    def _get_time(self, key: str) -> datetime | None:
        value = self._get(key)
        return None if value is None else datetime.fromisoformat(value)


def stored_hlc(row: Any, node: str) -> Hlc:
    """The clock from meta's ``hlc`` value (a row, or its JSON text; None: not stored)."""
    if row is None:
        return Hlc.zero(node)
    text = json.loads(row if isinstance(row, str) else row[0])
    stored = Hlc.parse(text)
    return Hlc(stored.wall_ms, stored.counter, node)
