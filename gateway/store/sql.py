"""The SQLite helpers every store module shares: a transaction, ``IN`` lists of any length,
digests, canonical JSON and the time text the tables hold. Exports ``Transaction``,
``rows_in``, ``canonical_json``, ``row_digest``, ``text_digest``, ``iso``, ``parse_time``."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import sqlite3
from collections.abc import Iterable
from typing import Any


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
    commits or rolls back)."""

    def __init__(self, conn: sqlite3.Connection, durable: bool = False) -> None:
        self.conn = conn
        self.durable = durable
        self.nested = False

    def __enter__(self) -> sqlite3.Connection:
        self.nested = self.conn.in_transaction
        if not self.nested:
            if self.durable:  # set outside a transaction, where it surely applies
                self.conn.execute("PRAGMA synchronous=FULL")
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except BaseException:
                self._normal()
                raise
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self.nested:
            return
        try:
            self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self._normal()

    def _normal(self) -> None:
        if self.durable:
            self.conn.execute("PRAGMA synchronous=NORMAL")


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
