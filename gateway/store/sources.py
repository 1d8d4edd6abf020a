"""The legacy systems' side of the gateway store: source runs (what was read, when, with what
outcome), quarantined rows, each source's last values per order (for diffs), and driver results
waiting to be written back.

``SourceStore`` holds their SQL, on the ``Store``'s connection (its listings through
sqlite-utils); ``Store`` is one. ``gateway.store.runs`` stages and applies one run.
"""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

import sqlite_utils

from gateway.store.sql import iso


@dataclass(frozen=True)
class RunInfo:
    run_id: int
    source: str
    started_at: str
    finished_at: str | None
    location: str
    status: str
    as_of: str | None
    rows_read: int
    rows_changed: int
    rows_quarantined: int
    rows_deleted: int
    claims: int
    error: str | None


@dataclass(frozen=True)
class QuarantineRow:
    id: int
    source: str
    run_id: int
    location: str
    row: int
    order_id: str | None
    field: str
    raw: str
    reason: str
    created_at: str
    closed_at: str | None
    closed_why: str | None


_RUN_COLUMNS = ", ".join(f.name for f in fields(RunInfo))
_QUARANTINE_COLUMNS = ", ".join(f.name for f in fields(QuarantineRow))


class SourceStore:
    """SQL for source runs, quarantine, source state and the write-back queue."""

    conn: sqlite3.Connection
    db: sqlite_utils.Database

    # --- source runs --------------------------------------------------------------------

    def fingerprint_seen(self, source: str, fingerprint: str) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM runs WHERE source=? AND fingerprint=? AND status='ok' LIMIT 1",
            (source, fingerprint),
        ).fetchone()
        return row is not None

    def record_run(
        self,
        source: str,
        *,
        started_at: _dt.datetime,
        finished_at: _dt.datetime,
        status: str,
        location: str = "",
        fingerprint: str | None = None,
        error: str | None = None,
        as_of: _dt.datetime | None = None,
        rows_read: int = 0,
        rows_quarantined: int = 0,
    ) -> int:
        cur = self.conn.execute(
            "INSERT INTO runs(source, started_at, finished_at, location, fingerprint, status, "
            "as_of, error, rows_read, rows_quarantined) VALUES(?,?,?,?,?,?,?,?,?,?)",
            (source, iso(started_at), iso(finished_at), location, fingerprint, status,
             None if as_of is None else iso(as_of), error, rows_read, rows_quarantined),
        )
        return int(cur.lastrowid or 0)

    def runs(self, source: str | None = None, limit: int = 50) -> list[RunInfo]:
        where, args = ("source = ?", [source]) if source is not None else (None, None)
        return [RunInfo(**r) for r in self.db.table("runs").rows_where(
            where, args, select=_RUN_COLUMNS, order_by="run_id DESC", limit=limit)]

    def last_run(self, source: str, *, status: str | None = None) -> RunInfo | None:
        where, args = "source = ?", [source]
        if status is not None:
            where, args = where + " AND status = ?", [*args, status]
        for row in self.db.table("runs").rows_where(where, args, select=_RUN_COLUMNS,
                                              order_by="run_id DESC", limit=1):
            return RunInfo(**row)
        return None

    # --- quarantine ---------------------------------------------------------------------

    def quarantine(self, source: str | None = None, *, include_closed: bool = False
                   ) -> list[QuarantineRow]:
        clauses, args = [], []
        if source is not None:
            clauses.append("source = ?")
            args.append(source)
        if not include_closed:
            clauses.append("closed_at IS NULL")
        return [QuarantineRow(**r) for r in self.db.table("quarantine").rows_where(
            " AND ".join(clauses) or None, args, select=_QUARANTINE_COLUMNS, order_by="id")]

    def open_quarantine_records(self, source: str, mapping_digest: str
                                ) -> list[tuple[int, str, int, str]]:
        """Open quarantined rows recorded under another mapping: (id, location, row, record).

        Rows refused as duplicate order ids carry no raw record (no mapping can fix them) and
        wait for the next export instead."""
        return list(self.conn.execute(
            "SELECT id, location, row, record FROM quarantine "
            "WHERE source=? AND closed_at IS NULL AND mapping != ? AND record != '' ORDER BY id",
            (source, mapping_digest),
        ))

    def close_quarantine(self, ids: Iterable[int], now: _dt.datetime, why: str) -> None:
        self.conn.executemany(
            "UPDATE quarantine SET closed_at=?, closed_why=? WHERE id=?",
            ((iso(now), why, i) for i in ids),
        )

    # --- source state (for diffs) -------------------------------------------------------

    def source_values(self, source: str, order_id: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT vals FROM source_state WHERE source=? AND order_id=?", (source, order_id)
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def source_orders(self, source: str) -> list[tuple[str, dict[str, Any]]]:
        """Every order the source lists now, with its last values, by order id."""
        return [(o, dict(json.loads(v))) for o, v in self.conn.execute(
            "SELECT order_id, vals FROM source_state WHERE source=? ORDER BY order_id",
            (source,))]

    def source_order_count(self, source: str) -> int:
        return int(self.conn.execute(
            "SELECT count(*) FROM source_state WHERE source=?", (source,)
        ).fetchone()[0])

    def latest_as_of(self, source: str) -> str | None:
        row = self.conn.execute(
            "SELECT max(as_of) FROM claim_sets WHERE source=?", (source,)
        ).fetchone()
        return None if row is None else row[0]

    # --- write-back of driver results ---------------------------------------------------

    def add_result(self, result_id: str, order_id: str, body: dict[str, Any],
                   now: _dt.datetime) -> bool:
        """Queue a driver result for the legacy system (once per result id)."""
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO writeback(result_id, order_id, body, created_at) "
            "VALUES(?,?,?,?)",
            (result_id, order_id, json.dumps(body, default=str), iso(now)),
        )
        return bool(cur.rowcount)

    def pending_results(self, limit: int = 10_000) -> list[dict[str, Any]]:
        """Results not yet written back, oldest first: dicts with result_id, order_id, result,
        reason, arrived_at, done_at, note."""
        rows = self.conn.execute(
            "SELECT body FROM writeback WHERE written_at IS NULL ORDER BY created_at, result_id "
            "LIMIT ?", (limit,)
        ).fetchall()
        return [dict(json.loads(r[0])) for r in rows]

    def mark_written(self, result_ids: Iterable[str], now: _dt.datetime, target: str) -> None:
        self.conn.executemany(
            "UPDATE writeback SET written_at=?, target=? WHERE result_id=?",
            ((iso(now), target, r) for r in result_ids),
        )
