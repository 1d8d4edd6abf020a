"""The SQLite helpers every store module shares: a transaction, ``IN`` lists of any length,
digests, canonical JSON and the time text the tables hold. Exports ``Transaction``,
``store_error``, ``rows_in``, ``canonical_json``, ``row_digest``, ``text_digest``, ``iso``,
``parse_time``."""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gateway.errors import StoreError


def iso(moment: _dt.datetime) -> str:
    return moment.isoformat()


def parse_time(text: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(text)


canonical_json = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, check_circular=False
).encode
"""``sync.model.canonical`` with its encoder built once (the same text, without building a
JSONEncoder per call: ingest encodes a few values per row of a million-row export)."""


def row_digest(vals: dict[str, Any]) -> str:
    return text_digest(canonical_json(vals))


def text_digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


class Transaction:
    """BEGIN IMMEDIATE ... COMMIT; inside an open transaction it joins it (the outer one
    commits or rolls back).

    SQLite's errors become ``StoreError`` naming the file (a read-only store, a full disk, an
    I/O error), here, in one place. A COMMIT that fails (a full disk) is rolled back whole:
    nothing of the transaction stays, so the views and their stream entries, written in it
    together, stay consistent with each other."""

    def __init__(self, conn: sqlite3.Connection, durable: bool = False,
                 path: Path | None = None) -> None:
        self.conn = conn
        self.durable = durable
        self.nested = False
        self.path = path

    def __enter__(self) -> sqlite3.Connection:
        self.nested = self.conn.in_transaction
        if not self.nested:
            try:
                if self.durable:  # set outside a transaction, where it surely applies
                    self.conn.execute("PRAGMA synchronous=FULL")
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                self._normal()
                raise store_error(self.path, exc) from None
            except BaseException:
                self._normal()
                raise
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self.nested:
            return
        try:
            try:
                self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
            except sqlite3.Error as failed:
                if self.conn.in_transaction:  # SQLite may have rolled back itself already
                    with contextlib.suppress(sqlite3.Error):
                        self.conn.execute("ROLLBACK")
                if exc_type is None:
                    raise store_error(self.path, failed) from None
        finally:
            self._normal()
        if isinstance(exc, sqlite3.Error):
            raise store_error(self.path, exc) from None

    def _normal(self) -> None:
        if self.durable:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("PRAGMA synchronous=NORMAL")


def store_error(path: Path | None, exc: sqlite3.Error) -> StoreError:
    """One line naming the store's file and what SQLite said, with what to do for the
    failures an operator can fix (a read-only file or folder, a full disk); those are
    ``fatal``: nothing can be written at all."""
    where = f"store {path}" if path is not None else "store"
    text = str(exc)
    if "readonly" in text:
        hint = "; make the file and its folder writable for this user"
    elif "disk is full" in text:
        hint = "; free space on its disk (nothing of this change was kept)"
    elif "disk I/O error" in text:  # also what a file-size limit (EFBIG) gives
        hint = ("; its disk may be full or failing: free space or check it (nothing of this "
                "change was kept)")
    else:
        hint = ""
    error = StoreError(f"{where}: {text}{hint}")
    error.fatal = bool(hint)
    return error


def rows_in(conn: sqlite3.Connection, sql: str, ids: Iterable[str], *before: Any
            ) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` whose ``IN ({marks})`` list is ``ids``, 500 ids a query (SQLite's
    bound-parameter limit); ``before``: parameters ahead of the list."""
    items = list(ids)
    rows: list[tuple[Any, ...]] = []
    for low in range(0, len(items), 500):
        chunk = items[low:low + 500]
        rows += conn.execute(sql.format(marks=",".join("?" * len(chunk))),
                             (*before, *chunk)).fetchall()
    return rows
