"""The gateway's store: one SQLite file (WAL) holding claims, resolutions, quarantine, source
runs, merged views, the device registry, device streams and the audit log.

Only this module, ``gateway/runstore.py`` (one source run, staged and applied in one
transaction) and ``gateway/devicestore.py`` speak SQL. Everything handed out is a pydantic model
or a frozen dataclass.

Claims are stored as *claim sets*: one row per (source statement, order) holding the fields it
changed, so a million-row export writes a million rows, not fourteen million. The claim id of
field ``f`` in set ``S`` is ``S#f``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlite_utils

from gateway.errors import StoreError
from sync.hlc import Hlc, tick
from sync.merge import Merged, OneSet
from sync.model import Claim, OrderView, Resolution, canonical, trusted
from sync.rules import RouteCheck, rule_inputs

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from gateway.runstore import SourceRun

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT,
    location TEXT NOT NULL DEFAULT '', fingerprint TEXT,
    status TEXT NOT NULL,               -- ok | skipped | partial | failed
    as_of TEXT, rows_read INTEGER DEFAULT 0, rows_changed INTEGER DEFAULT 0,
    rows_quarantined INTEGER DEFAULT 0, rows_deleted INTEGER DEFAULT 0,
    claims INTEGER DEFAULT 0, error TEXT
);
CREATE INDEX IF NOT EXISTS runs_source ON runs(source, run_id);
CREATE TABLE IF NOT EXISTS claim_sets (
    set_id TEXT PRIMARY KEY, source TEXT NOT NULL, order_id TEXT NOT NULL,
    run_id INTEGER, source_rev TEXT NOT NULL DEFAULT '',
    as_of TEXT NOT NULL, received_at TEXT NOT NULL, hlc TEXT NOT NULL,
    present INTEGER NOT NULL DEFAULT 1, vals TEXT NOT NULL, based_on TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS claim_sets_order ON claim_sets(order_id);
CREATE TABLE IF NOT EXISTS source_state (
    source TEXT NOT NULL, order_id TEXT NOT NULL, digest TEXT NOT NULL, vals TEXT NOT NULL,
    PRIMARY KEY (source, order_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS resolutions (
    resolution_id TEXT PRIMARY KEY, order_id TEXT NOT NULL, field TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS resolutions_order ON resolutions(order_id);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, run_id INTEGER NOT NULL,
    location TEXT NOT NULL, row INTEGER NOT NULL, order_id TEXT, field TEXT NOT NULL,
    raw TEXT NOT NULL, reason TEXT NOT NULL, record TEXT NOT NULL, mapping TEXT NOT NULL,
    created_at TEXT NOT NULL, closed_at TEXT, closed_why TEXT
);
CREATE INDEX IF NOT EXISTS quarantine_open ON quarantine(source, closed_at);
CREATE TABLE IF NOT EXISTS views (
    order_id TEXT PRIMARY KEY, body TEXT NOT NULL, digest TEXT NOT NULL,
    drivers TEXT NOT NULL, deadline TEXT,
    rules TEXT  -- the view's settled rule inputs (sync.rules.rule_inputs), canonical JSON
);
CREATE INDEX IF NOT EXISTS views_deadline ON views(deadline);
CREATE TABLE IF NOT EXISTS dirty (order_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS proposals (
    proposal_id TEXT PRIMARY KEY, source TEXT NOT NULL, order_id TEXT NOT NULL,
    vals TEXT NOT NULL, as_of TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT,
    state TEXT NOT NULL, decided_by TEXT, decided_at TEXT
);
CREATE TABLE IF NOT EXISTS writeback (
    result_id TEXT PRIMARY KEY, order_id TEXT NOT NULL, body TEXT NOT NULL,
    created_at TEXT NOT NULL, written_at TEXT, target TEXT
);
"""


def iso(moment: _dt.datetime) -> str:
    return moment.isoformat()


def _time(text: str) -> _dt.datetime:
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


class Store:
    """The gateway's SQLite store. Not thread-safe: one Store per thread (WAL lets them share
    the file)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rules_cache: dict[str, tuple[dict[str, str], dict[str, dict[str, Any]]]] = {}
        """driver -> (rules texts, parsed) of the route ``DeviceStore.route_rules`` last read."""
        self.route_checks: dict[str, RouteCheck] = {}
        """driver -> its route's last rule check (``gateway.views``), while this Store is the
        last to have written routes (``route_checks_gen``)."""
        self.route_checks_gen: str | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None,
                                   check_same_thread=False)
            self.db = sqlite_utils.Database(conn)
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
            older = _tables(conn)
            conn.executescript(SCHEMA)
            from gateway.devicestore import DEVICE_SCHEMA

            conn.executescript(DEVICE_SCHEMA)
            _migrate(conn, older)
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

    def transaction(self, *, durable: bool = False) -> _Tx:
        """``with store.transaction():`` — BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error.

        The store commits with ``synchronous=NORMAL``: a COMMIT survives the process, and the
        WAL is synced at checkpoints. ``durable=True`` also syncs it at this COMMIT, so it
        survives a power cut: for what the gateway acknowledges (a driver's event, a dispatch
        command), after which the sender forgets it. Inside another transaction it joins it
        (the outer one commits, as it was asked to)."""
        return _Tx(self.conn, durable, self.path)

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
        return {order_id: _claims(order_id, rows)
                for order_id, rows in self._claim_rows(order_ids).items()}

    def claims_to_merge(self, order_ids: Iterable[str]) -> dict[str, list[Claim]]:
        """The claims of ``claims_for`` that an order's merge can depend on, built without the
        rest: each source's latest claim per field (merge rule 2), and every claim of the
        order named, transitively, in those claims' ``based_on`` (rule 4 follows them). The
        others are history that no rule reads, so ``merge_order`` over these gives the view
        it gives over all of the order's claims."""
        return {order_id: _claims_to_merge(order_id, rows)
                for order_id, rows in self._claim_rows(order_ids).items()}

    def merge_inputs(self, order_ids: Iterable[str]) -> dict[str, OneSet | list[Claim]]:
        """``claims_to_merge``, or the order's ``sync.merge.OneSet`` where it is one (its
        view is then built without the claims: ``Merged.of_one_set``)."""
        out: dict[str, OneSet | list[Claim]] = {}
        for order_id, rows in self._claim_rows(order_ids).items():
            parsed = _parsed(rows)
            one = _one_set(rows, parsed[0])
            out[order_id] = _claims_to_merge(order_id, rows, parsed) if one is None else one
        return out

    def _claim_rows(self, order_ids: Iterable[str]) -> dict[str, list[tuple[Any, ...]]]:
        """The orders' claim set rows, by order (the columns ``_claims`` reads)."""
        by_order: dict[str, list[tuple[Any, ...]]] = {}
        for row in rows_in(
            self.conn,
            "SELECT set_id, source, order_id, source_rev, as_of, received_at, hlc, present, "
            "vals, based_on FROM claim_sets WHERE order_id IN ({marks})", order_ids,
        ):
            by_order.setdefault(row[2], []).append(row)
        return by_order

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
        rows = self.conn.execute("SELECT order_id FROM dirty LIMIT ?", (limit,)).fetchall()
        ids = [r[0] for r in rows]
        self.conn.executemany("DELETE FROM dirty WHERE order_id=?", ((o,) for o in ids))
        return ids

    def dirty_count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM dirty").fetchone()[0])

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
            drivers_json = json.dumps(sorted(merged.drivers))
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
        sql = ("SELECT run_id, source, started_at, finished_at, location, status, as_of, "
               "rows_read, rows_changed, rows_quarantined, rows_deleted, claims, error FROM runs")
        args: tuple[Any, ...] = ()
        if source is not None:
            sql += " WHERE source=?"
            args = (source,)
        sql += " ORDER BY run_id DESC LIMIT ?"
        return [RunInfo(*r) for r in self.conn.execute(sql, (*args, limit))]

    def last_run(self, source: str, *, status: str | None = None) -> RunInfo | None:
        sql = ("SELECT run_id, source, started_at, finished_at, location, status, as_of, "
               "rows_read, rows_changed, rows_quarantined, rows_deleted, claims, error FROM runs "
               "WHERE source=?")
        args: list[Any] = [source]
        if status is not None:
            sql += " AND status=?"
            args.append(status)
        row = self.conn.execute(sql + " ORDER BY run_id DESC LIMIT 1", args).fetchone()
        return None if row is None else RunInfo(*row)

    def begin_run(self, source: str, *, started_at: _dt.datetime, location: str,
                  fingerprint: str | None) -> SourceRun:
        from gateway.runstore import SourceRun

        return SourceRun(self, source, started_at, location, fingerprint)

    # --- quarantine ---------------------------------------------------------------------

    def quarantine(self, source: str | None = None, *, include_closed: bool = False
                   ) -> list[QuarantineRow]:
        sql = ("SELECT id, source, run_id, location, row, order_id, field, raw, reason, "
               "created_at, closed_at, closed_why FROM quarantine WHERE 1=1")
        args: list[Any] = []
        if source is not None:
            sql += " AND source=?"
            args.append(source)
        if not include_closed:
            sql += " AND closed_at IS NULL"
        return [QuarantineRow(*r) for r in self.conn.execute(sql + " ORDER BY id", args)]

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


def _parsed(rows: list[tuple[Any, ...]]
            ) -> tuple[list[dict[str, Any]], list[tuple[str, ...]]]:
    """Each claim set row's values and ``based_on``, parsed."""
    return ([json.loads(row[8]) for row in rows],
            [() if row[9] == "[]" else tuple(json.loads(row[9])) for row in rows])


def _claims(order_id: str, rows: list[tuple[Any, ...]],
            parsed: tuple[list[dict[str, Any]], list[tuple[str, ...]]] | None = None,
            wanted: set[tuple[int, str]] | None = None) -> list[Claim]:
    """The claims of one order's claim set rows (``Store._claim_rows``; ``parsed``: their
    ``_parsed`` values, if read already): every (row, field), or the ``wanted`` ones. Our own
    rows, validated when they were stored: built without validation."""
    vals, based = _parsed(rows) if parsed is None else parsed
    claims: list[Claim] = []
    for n, row in enumerate(rows):
        set_id, source, _order, rev, as_of, rec, hlc, present, _vals, _based = row
        as_of_t, rec_t, live, based_on = _time(as_of), _time(rec), bool(present), based[n]
        for field, value in vals[n].items():
            if wanted is None or (n, field) in wanted:
                claims.append(trusted(
                    Claim, claim_id=f"{set_id}#{field}", order_id=order_id, field=field,
                    value=value, present=live, source=source, source_rev=rev, as_of=as_of_t,
                    received_at=rec_t, based_on=based_on, hlc=hlc))
    return claims


def _one_set(rows: list[tuple[Any, ...]], vals: list[dict[str, Any]]) -> OneSet | None:
    """The rows' ``OneSet``: one source, whose latest set (by hlc, no tie) is present and
    claims every field its other sets do; None when the rows are not that."""
    source = rows[0][1]
    latest = 0
    for n in range(1, len(rows)):
        if rows[n][1] != source:
            return None
        if rows[n][6] > rows[latest][6]:
            latest = n
    row = rows[latest]
    if not row[7]:
        return None
    fields = vals[latest].keys()
    for n in range(len(rows)):
        if n != latest and (rows[n][6] == row[6] or not vals[n].keys() <= fields):
            return None
    return OneSet(row[0], source, vals[latest], _time(row[4]), _time(row[5]))


def _claims_to_merge(order_id: str, rows: list[tuple[Any, ...]],
                     parsed: tuple[list[dict[str, Any]], list[tuple[str, ...]]] | None = None
                     ) -> list[Claim]:
    """``Store.claims_to_merge`` for one order's claim set rows (as its query reads them;
    ``parsed``: their ``_parsed`` values, if read already)."""
    vals, based = _parsed(rows) if parsed is None else parsed
    wanted: set[tuple[int, str]] = set()  # (row, field) of each claim to build
    by_source: dict[str, list[int]] = {}
    for n, row in enumerate(rows):
        by_source.setdefault(row[1], []).append(n)
    for ns in by_source.values():
        if len(ns) == 1:
            wanted.update((ns[0], field) for field in vals[ns[0]])
        elif len({rows[n][6] for n in ns}) == len(ns):
            # distinct hlcs: a field's latest claim is in the latest set that has the field
            covered: set[str] = set()
            for n in sorted(ns, key=lambda n: rows[n][6], reverse=True):
                fields = vals[n].keys() - covered
                wanted.update((n, field) for field in fields)
                covered |= fields
        else:  # equal hlcs: rule 2's whole key, (hlc, claim id), field by field
            best: dict[str, tuple[tuple[str, str], int]] = {}
            for n in ns:
                set_id, hlc = rows[n][0], rows[n][6]
                for field in vals[n]:
                    key = (hlc, f"{set_id}#{field}")
                    found = best.get(field)
                    if found is None or key > found[0]:
                        best[field] = (key, n)
            wanted.update((n, field) for field, (_key, n) in best.items())
    if any(based):  # rule 4 reads the claims a built claim names, and the ones they name
        index = {row[0]: n for n, row in enumerate(rows)}
        todo = [n for n, _field in wanted]
        while todo:
            for cid in based[todo.pop()]:
                set_id, _sep, field = cid.rpartition("#")
                m = index.get(set_id)
                if m is not None and field in vals[m] and (m, field) not in wanted:
                    wanted.add((m, field))
                    todo.append(m)
    return _claims(order_id, rows, (vals, based), wanted)


DEFERRED_CHECKPOINT_PAGES = 65536
"""256 MiB of WAL: where a Store that ``defer_checkpoints`` checkpoints by itself after all."""


class Checkpointer:
    """Checkpoints a store's WAL from its own thread and connection, every ``every_s``.

    A checkpoint copies the WAL's pages into the database file and fsyncs it: in the writer's
    COMMIT (SQLite's autocheckpoint) it stalled the gateway's worker, the one thread every
    change passes through, for a fifth of its time (bench_refresh, batch 500: refresh 209 us
    per change with it, 167 without any checkpoint, 174 with this one). A PASSIVE checkpoint
    never blocks the writer or readers, and never waits for them; the WAL restarts from its
    beginning once a checkpoint has caught up."""

    def __init__(self, path: Path, every_s: float = 1.0) -> None:
        self.path = Path(path)
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="crossdock-checkpoint",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(self.every_s):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # the writer checkpoints itself, later
                    log.warning("store %s: checkpoint failed: %s", self.path, exc)
        finally:
            conn.close()


class _Tx:
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
    failures an operator can fix (a read-only file or folder, a full disk)."""
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


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _migrate(conn: sqlite3.Connection, older: set[str]) -> None:
    """Bring a store written by an older gateway up to this schema (``older``: the tables the
    file held before ``SCHEMA`` ran; empty for a new file).

    * ``views.rules`` (rule inputs beside each view): added, and filled from the stored bodies.
    * ``device_orders.body`` (a copy of each body a device was last sent) becomes ``digest``
      (the body's ``text_digest``): the body is the stored view with the route's warnings.
    * ``route_warnings`` (the warnings each driver's devices were last sent): new. An older
      gateway re-sent whole routes, so its devices hold the warnings the rules give now; the
      meta key ``route_warnings`` = ``unknown`` asks the next refresh to record them (without
      sending anything).
    """
    columns = {r[1] for r in conn.execute("PRAGMA table_info(views)")}
    if "rules" not in columns:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("ALTER TABLE views ADD COLUMN rules TEXT")
            rows = conn.execute("SELECT order_id, body FROM views").fetchall()
            conn.executemany("UPDATE views SET rules=? WHERE order_id=?", [
                (canonical_json(rule_inputs(OrderView.model_validate_json(body))), oid)
                for oid, body in rows])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    if "body" in {r[1] for r in conn.execute("PRAGMA table_info(device_orders)")}:
        conn.create_function("crossdock_digest", 1, text_digest, deterministic=True)
        conn.execute("BEGIN IMMEDIATE")
        try:
            if "body" in {r[1] for r in conn.execute("PRAGMA table_info(device_orders)")}:
                # (checked again: another process may have migrated it while we waited)
                conn.execute("CREATE TABLE device_orders_digests (device TEXT NOT NULL, "
                             "order_id TEXT NOT NULL, digest TEXT NOT NULL, "
                             "PRIMARY KEY (device, order_id)) WITHOUT ROWID")
                conn.execute("INSERT INTO device_orders_digests SELECT device, order_id, "
                             "crossdock_digest(body) FROM device_orders")
                conn.execute("DROP TABLE device_orders")
                conn.execute("ALTER TABLE device_orders_digests RENAME TO device_orders")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    if "views" in older and "route_warnings" not in older:
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('route_warnings', 'unknown')")


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
