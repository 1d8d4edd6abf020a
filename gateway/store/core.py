"""The gateway's store: one SQLite file (WAL) holding claims, resolutions, quarantine, source
runs, merged views, the device registry, device streams and the audit log.

Only the modules of ``gateway/store/`` speak SQL: this one, ``runs`` (one source run, staged
and applied in one transaction), ``devices`` and ``schema``. Everything handed out is a
pydantic model or a frozen dataclass.

Claims are stored as *claim sets*: one row per (source statement, order) holding the fields it
changed, so a million-row export writes a million rows, not fourteen million. The claim id of
field ``f`` in set ``S`` is ``S#f``.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any

import sqlite_utils

from gateway.errors import StoreError
from gateway.private import make_private, private_dir
from gateway.store.checkpointer import DEFERRED_CHECKPOINT_PAGES
from gateway.store.claims import build_claims, claims_to_merge, merge_inputs
from gateway.store.schema import create
from gateway.store.sql import Transaction, canonical_json, iso, rows_in, text_digest
from sync.hlc import Hlc, tick
from sync.merged import Merged, OneSet
from sync.model import Claim, OrderView, Resolution, canonical

log = logging.getLogger(__name__)


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


class Store:
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

    # --- claims and resolutions ---------------------------------------------------------

    def add_claim_set(
        self,
        *,
        set_id: str,
        source: str,
        order_id: str,
        vals: dict[str, Any],
        as_of: _dt.datetime,
        received_at: _dt.datetime,
        hlc: str,
        present: bool = True,
        based_on: Sequence[str] = (),
        source_rev: str = "",
        run_id: int | None = None,
    ) -> bool:
        """Store one claim set; False when its id is already stored (an echo: no-op)."""
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO claim_sets(set_id, source, order_id, run_id, source_rev, "
            "as_of, received_at, hlc, present, vals, based_on) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
            (set_id, source, order_id, run_id, source_rev, iso(as_of), iso(received_at), hlc,
             int(present), canonical(vals), json.dumps(list(based_on))),
        )
        if cur.rowcount:
            self.mark_dirty([order_id])
        return bool(cur.rowcount)

    def claims_for(self, order_ids: Iterable[str]) -> dict[str, list[Claim]]:
        """Every claim stored for these orders (history included)."""
        return {order_id: build_claims(order_id, rows)
                for order_id, rows in self._claim_rows(order_ids).items()}

    def claims_to_merge(self, order_ids: Iterable[str]) -> dict[str, list[Claim]]:
        """The claims of ``claims_for`` that an order's merge can depend on, built without the
        rest: each source's latest claim per field (merge rule 2), and every claim of the
        order named, transitively, in those claims' ``based_on`` (rule 4 follows them). The
        others are history that no rule reads, so ``merge_order`` over these gives the view
        it gives over all of the order's claims."""
        return {order_id: claims_to_merge(order_id, rows)
                for order_id, rows in self._claim_rows(order_ids).items()}

    def merge_inputs(self, order_ids: Iterable[str]) -> dict[str, OneSet | list[Claim]]:
        """``claims_to_merge``, or the order's ``sync.merge.OneSet`` where it is one (its
        view is then built without the claims: ``Merged.of_one_set``)."""
        return merge_inputs(self._claim_rows(order_ids))

    def _claim_rows(self, order_ids: Iterable[str]) -> dict[str, list[tuple[Any, ...]]]:
        """The orders' claim set rows, by order (the columns ``build_claims`` reads)."""
        by_order: dict[str, list[tuple[Any, ...]]] = {}
        for row in rows_in(
            self.conn,
            "SELECT set_id, source, order_id, source_rev, as_of, received_at, hlc, present, "
            "vals, based_on FROM claim_sets WHERE order_id IN ({marks})", order_ids,
        ):
            by_order.setdefault(row[2], []).append(row)
        return by_order

    def claims_name_driver(self, driver: str) -> bool:
        """Whether some stored claim set names ``driver`` as an order's driver."""
        row = self.conn.execute(
            "SELECT 1 FROM claim_sets, json_each(claim_sets.vals) WHERE json_each.key='driver' "
            "AND json_each.value=? LIMIT 1", (driver,)).fetchone()
        return row is not None

    def add_resolution(self, resolution: Resolution) -> bool:
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO resolutions(resolution_id, order_id, field, body) "
            "VALUES(?,?,?,?)",
            (resolution.resolution_id, resolution.order_id, resolution.field,
             resolution.model_dump_json()),
        )
        if cur.rowcount:
            self.mark_dirty([resolution.order_id])
        return bool(cur.rowcount)

    def resolutions_for(self, order_ids: Iterable[str]) -> dict[str, list[Resolution]]:
        out: dict[str, list[Resolution]] = {}
        for (body,) in rows_in(
            self.conn, "SELECT body FROM resolutions WHERE order_id IN ({marks})", order_ids
        ):
            res = Resolution.model_validate_json(body)
            out.setdefault(res.order_id, []).append(res)
        return out

    # --- views --------------------------------------------------------------------------

    def mark_dirty(self, order_ids: Iterable[str]) -> None:
        self.conn.executemany(
            "INSERT OR IGNORE INTO dirty(order_id) VALUES(?)", ((o,) for o in order_ids)
        )

    def take_dirty(self, limit: int = 2000) -> list[str]:
        """Up to ``limit`` dirty orders, by order id, no longer dirty (in one statement)."""
        rows = self.conn.execute(
            "DELETE FROM dirty WHERE order_id IN (SELECT order_id FROM dirty ORDER BY order_id "
            "LIMIT ?) RETURNING order_id", (limit,)).fetchall()
        return sorted([r[0] for r in rows])

    def dirty_count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM dirty").fetchone()[0])

    def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version``: changes when another connection commits."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def mark_due(self, now: _dt.datetime) -> int:
        """Orders whose open conflict reached its escalation deadline become dirty."""
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO dirty(order_id) SELECT order_id FROM views "
            "WHERE deadline IS NOT NULL AND deadline <= ?",
            (iso(now),),
        )
        return cur.rowcount

    def view(self, order_id: str) -> OrderView | None:
        row = self.conn.execute("SELECT body FROM views WHERE order_id=?", (order_id,)).fetchone()
        return None if row is None else OrderView.model_validate_json(row[0])

    def view_states(self, order_ids: Iterable[str]) -> dict[str, tuple[str, str, str | None]]:
        """What ``put_views`` compares a new view with, for many orders in one query per 500:
        order id -> (digest, drivers JSON, deadline); orders without a view are left out."""
        return {oid: (digest, drivers, deadline) for oid, digest, drivers, deadline in rows_in(
            self.conn,
            "SELECT order_id, digest, drivers, deadline FROM views WHERE order_id IN ({marks})",
            order_ids)}

    def put_views(self, items: Sequence[tuple[Merged, tuple[str, str, str | None] | None]]
                  ) -> list[bool]:
        """Store orders' merged views, each with its stored state as ``view_states`` read it
        (None: no view yet), in one statement; per item, False when the view is identical
        to the stored one (not written).

        The body is stored in the wire's compact form (defaults left out, as ``sync.codec``
        encodes), so a stream entry can carry it as it is; beside it, the view's rule inputs,
        so a route's rules are checked without parsing its views."""
        rows: list[tuple[str, str, str, str, str | None, str]] = []
        out: list[bool] = []
        for merged, old in items:
            body = merged.body
            digest = text_digest(body)
            deadline = None if merged.deadline is None else iso(merged.deadline)
            drivers = merged.drivers
            drivers_json = ("[]" if not drivers else  # json.dumps(sorted(drivers)), as it writes
                            f"[{encode_basestring_ascii(drivers[0])}]" if len(drivers) == 1 else
                            json.dumps(sorted(drivers)))
            if old is not None and old == (digest, drivers_json, deadline):
                out.append(False)
                continue
            rows.append((merged.order_id, body, digest, drivers_json, deadline,
                         canonical_json(merged.inputs)))
            out.append(old is None or old[0] != digest or old[1] != drivers_json)
        self.conn.executemany(
            "INSERT INTO views(order_id, body, digest, drivers, deadline, rules) "
            "VALUES(?,?,?,?,?,?) "
            "ON CONFLICT(order_id) DO UPDATE SET body=excluded.body, digest=excluded.digest, "
            "drivers=excluded.drivers, deadline=excluded.deadline, rules=excluded.rules", rows)
        return out

    def views(self, order_ids: Iterable[str]) -> dict[str, OrderView]:
        return {oid: OrderView.model_validate_json(body)
                for oid, body in self.view_bodies(order_ids).items()}

    def view_bodies(self, order_ids: Iterable[str]) -> dict[str, str]:
        """The stored views' JSON, unparsed (as ``views`` returns them parsed)."""
        return dict(rows_in(
            self.conn, "SELECT order_id, body FROM views WHERE order_id IN ({marks})", order_ids))

    def view_rules(self, order_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The stored views' rule inputs (``sync.rules.rule_inputs``), parsed from their small
        column: all ``sync.rules.check_inputs`` needs."""
        return {oid: json.loads(rules) for oid, rules in rows_in(
            self.conn, "SELECT order_id, rules FROM views WHERE order_id IN ({marks})",
            order_ids)}

    def conflict_views(self) -> list[OrderView]:
        rows = self.conn.execute(
            "SELECT body FROM views WHERE body LIKE '%\"state\":\"conflict\"%' ORDER BY order_id"
        ).fetchall()
        return [OrderView.model_validate_json(r[0]) for r in rows]

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
