"""The gateway's store: one SQLite file (WAL) holding claims, resolutions, quarantine, source
runs, merged views, the device registry, device streams and the audit log.

Only this module and ``gateway/devicestore.py`` speak SQL. Everything handed out is a pydantic
model or a frozen dataclass. One source run is one transaction (``SourceRun``): a run that
fails leaves the store exactly as it was.

Claims are stored as *claim sets*: one row per (source statement, order) holding the fields it
changed, so a million-row export writes a million rows, not fourteen million. The claim id of
field ``f`` in set ``S`` is ``S#f``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlite_utils

from gateway.errors import StoreError
from sync.hlc import Hlc, tick
from sync.model import Claim, OrderView, Resolution, canonical, trusted
from sync.rules import rule_inputs

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


def _iso(moment: _dt.datetime) -> str:
    return moment.isoformat()


def _time(text: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(text)


_canonical = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, check_circular=False
).encode
"""``sync.model.canonical`` with its encoder built once (the same text, without building a
JSONEncoder per call: ingest encodes a few values per row of a million-row export)."""


def row_digest(vals: dict[str, Any]) -> str:
    return _text_digest(_canonical(vals))


def _text_digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


StagedTuple = tuple[int, str, str, str, str, int]
"""A staged row as SourceRun stores it: (row, order id, digest, values JSON, record, fields)."""


def staged_tuple(row: int, order_id: str, vals: dict[str, Any], record: str = "") -> StagedTuple:
    """The staged form of a valid row (computed in whichever process read the row)."""
    text = _canonical(vals)
    return (row, order_id, _text_digest(text), text, record, len(vals))


def _raw_default(value: object) -> object:
    """Raw source values (dates, decimals, bytes) as tagged JSON, for quarantine re-tries."""
    if isinstance(value, _dt.datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, _dt.date):
        return {"$d": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$dec": str(value)}
    if isinstance(value, bytes):
        return {"$b": value.hex()}
    return {"$repr": repr(value)}


def _raw_hook(obj: dict[str, Any]) -> object:
    if len(obj) == 1:
        ((key, val),) = obj.items()
        if key == "$dt":
            return _dt.datetime.fromisoformat(val)
        if key == "$d":
            return _dt.date.fromisoformat(val)
        if key == "$dec":
            return Decimal(val)
        if key == "$b":
            return bytes.fromhex(val)
    return obj


_dump_record = json.JSONEncoder(
    default=_raw_default, ensure_ascii=False, check_circular=False
).encode


def dump_record(values: Any) -> str:
    return _dump_record(values if isinstance(values, dict) else dict(values))


def load_record(text: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(text, object_hook=_raw_hook)
    return loaded


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


@dataclass(frozen=True)
class StagedRow:
    row: int
    order_id: str
    vals: dict[str, Any]
    record: str


@dataclass(frozen=True)
class BadRow:
    row: int
    order_id: str | None
    field: str
    raw: str
    reason: str
    record: str


class _Unread:
    """``put_view``'s default: the stored state is read by ``put_view`` itself."""


_UNREAD = _Unread()


class Store:
    """The gateway's SQLite store. Not thread-safe: one Store per thread (WAL lets them share
    the file)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rules_cache: dict[str, tuple[dict[str, str], dict[str, dict[str, Any]]]] = {}
        """driver -> (rules texts, parsed) of the route ``DeviceStore.route_rules`` last read."""
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
            older = _tables(conn)
            conn.executescript(SCHEMA)
            from gateway.devicestore import DEVICE_SCHEMA

            conn.executescript(DEVICE_SCHEMA)
            _migrate(conn, older)
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: {exc}") from None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transactions -------------------------------------------------------------------

    def transaction(self) -> _Tx:
        """``with store.transaction():`` — BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error."""
        return _Tx(self.conn)

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
            (_iso(now), actor, action, json.dumps(detail, default=str)),
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
            (set_id, source, order_id, run_id, source_rev, _iso(as_of), _iso(received_at), hlc,
             int(present), canonical(vals), json.dumps(list(based_on))),
        )
        if cur.rowcount:
            self.mark_dirty([order_id])
        return bool(cur.rowcount)

    def claims_for(self, order_ids: Iterable[str]) -> dict[str, list[Claim]]:
        out: dict[str, list[Claim]] = {}
        for chunk in _chunks(list(order_ids), 500):
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                "SELECT set_id, source, order_id, source_rev, as_of, received_at, hlc, present, "
                f"vals, based_on FROM claim_sets WHERE order_id IN ({marks})",
                chunk,
            ).fetchall()
            for set_id, source, order_id, rev, as_of, rec, hlc, present, vals, based in rows:
                # our own rows, validated when they were stored: built without validation
                based_on = tuple(json.loads(based))
                as_of_t, rec_t, live = _time(as_of), _time(rec), bool(present)
                claims = out.setdefault(order_id, [])
                for field, value in json.loads(vals).items():
                    claims.append(
                        trusted(
                            Claim, claim_id=f"{set_id}#{field}", order_id=order_id, field=field,
                            value=value, present=live, source=source, source_rev=rev,
                            as_of=as_of_t, received_at=rec_t, based_on=based_on, hlc=hlc,
                        )
                    )
        return out

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
        for chunk in _chunks(list(order_ids), 500):
            marks = ",".join("?" * len(chunk))
            for (body,) in self.conn.execute(
                f"SELECT body FROM resolutions WHERE order_id IN ({marks})", chunk
            ):
                res = Resolution.model_validate_json(body)
                out.setdefault(res.order_id, []).append(res)
        return out

    def order_exists(self, order_id: str) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM claim_sets WHERE order_id=? LIMIT 1", (order_id,)
        ).fetchone()
        return row is not None

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
            (_iso(now),),
        )
        return cur.rowcount

    def view(self, order_id: str) -> OrderView | None:
        row = self.conn.execute("SELECT body FROM views WHERE order_id=?", (order_id,)).fetchone()
        return None if row is None else OrderView.model_validate_json(row[0])

    def view_states(self, order_ids: Iterable[str]) -> dict[str, tuple[str, str, str | None]]:
        """What ``put_view`` compares a new view with, for many orders in one query per 500:
        order id -> (digest, drivers JSON, deadline); orders without a view are left out."""
        out: dict[str, tuple[str, str, str | None]] = {}
        for chunk in _chunks(list(order_ids), 500):
            marks = ",".join("?" * len(chunk))
            for oid, digest, drivers, deadline in self.conn.execute(
                "SELECT order_id, digest, drivers, deadline FROM views "
                f"WHERE order_id IN ({marks})", chunk,
            ):
                out[oid] = (digest, drivers, deadline)
        return out

    def view_drivers(self, order_id: str) -> list[str]:
        row = self.conn.execute(
            "SELECT drivers FROM views WHERE order_id=?", (order_id,)
        ).fetchone()
        return [] if row is None else list(json.loads(row[0]))

    def put_view(self, view: OrderView, drivers: Sequence[str], *,
                 old: tuple[str, str, str | None] | _Unread | None = _UNREAD) -> bool:
        """Store an order's merged view; False when it is identical to the stored one.

        ``old`` is the stored view's state as ``view_states`` read it (None: no view yet);
        read here when not given.

        The body is stored in the wire's compact form (defaults left out, as ``sync.codec``
        encodes), so a stream entry can carry it as it is; beside it, the view's rule inputs,
        so a route's rules are checked without parsing its views."""
        body = view.model_dump_json(exclude_defaults=True)
        digest = hashlib.blake2b(body.encode(), digest_size=12).hexdigest()
        deadlines = [c.deadline for c in view.conflicts() if not c.escalated]
        deadline = _iso(min(deadlines)) if deadlines else None
        stored: tuple[str, str, str | None] | None
        if isinstance(old, _Unread):
            stored = self.conn.execute(
                "SELECT digest, drivers, deadline FROM views WHERE order_id=?", (view.order_id,)
            ).fetchone()
        else:
            stored = old
        drivers_json = json.dumps(sorted(drivers))
        if stored is not None and stored == (digest, drivers_json, deadline):
            return False
        self.conn.execute(
            "INSERT INTO views(order_id, body, digest, drivers, deadline, rules) "
            "VALUES(?,?,?,?,?,?) "
            "ON CONFLICT(order_id) DO UPDATE SET body=excluded.body, digest=excluded.digest, "
            "drivers=excluded.drivers, deadline=excluded.deadline, rules=excluded.rules",
            (view.order_id, body, digest, drivers_json, deadline,
             _canonical(rule_inputs(view))),
        )
        return stored is None or stored[0] != digest or stored[1] != drivers_json

    def views(self, order_ids: Iterable[str]) -> dict[str, OrderView]:
        out = {}
        for chunk in _chunks(list(order_ids), 500):
            marks = ",".join("?" * len(chunk))
            for oid, body in self.conn.execute(
                f"SELECT order_id, body FROM views WHERE order_id IN ({marks})", chunk
            ):
                out[oid] = OrderView.model_validate_json(body)
        return out

    def view_bodies(self, order_ids: Iterable[str]) -> dict[str, str]:
        """The stored views' JSON, unparsed (as ``views`` returns them parsed)."""
        out: dict[str, str] = {}
        for chunk in _chunks(list(order_ids), 500):
            marks = ",".join("?" * len(chunk))
            out.update(self.conn.execute(
                f"SELECT order_id, body FROM views WHERE order_id IN ({marks})", chunk))
        return out

    def view_rules(self, order_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The stored views' rule inputs (``sync.rules.rule_inputs``), parsed from their small
        column: all ``sync.rules.check_inputs`` needs."""
        out: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(list(order_ids), 500):
            marks = ",".join("?" * len(chunk))
            for oid, rules in self.conn.execute(
                f"SELECT order_id, rules FROM views WHERE order_id IN ({marks})", chunk
            ):
                out[oid] = json.loads(rules)
        return out

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
            (source, _iso(started_at), _iso(finished_at), location, fingerprint, status,
             None if as_of is None else _iso(as_of), error, rows_read, rows_quarantined),
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
            ((_iso(now), why, i) for i in ids),
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
            (result_id, order_id, json.dumps(body, default=str), _iso(now)),
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
            ((_iso(now), target, r) for r in result_ids),
        )


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT; inside an open transaction it joins it (the outer one
    commits or rolls back)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.nested = False

    def __enter__(self) -> sqlite3.Connection:
        self.nested = self.conn.in_transaction
        if not self.nested:
            self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self.nested:
            return
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _migrate(conn: sqlite3.Connection, older: set[str]) -> None:
    """Bring a store written by an older gateway up to this schema (``older``: the tables the
    file held before ``SCHEMA`` ran; empty for a new file).

    * ``views.rules`` (rule inputs beside each view): added, and filled from the stored bodies.
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
                (_canonical(rule_inputs(OrderView.model_validate_json(body))), oid)
                for oid, body in rows])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    if "views" in older and "route_warnings" not in older:
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('route_warnings', 'unknown')")


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class SourceRun:
    """One run of one source, staged in temporary tables and applied in one transaction.

    ``stage``/``reject`` take validated and refused rows as they stream by (batched, bounded
    memory); ``commit`` finds duplicate order ids (both rows quarantined), diffs the staged rows
    against the source's previous values, writes claim sets for what changed and withdrawal
    claims for orders gone from the export, closes the previous run's quarantine and records
    the run. Nothing is visible to readers until it commits.
    """

    def __init__(self, store: Store, source: str, started_at: _dt.datetime, location: str,
                 fingerprint: str | None) -> None:
        self.store = store
        self.conn = store.conn
        self.source = source
        self.started_at = started_at
        self.location = location
        self.fingerprint = fingerprint
        self.rows_read = 0
        self.conn.execute("DROP TABLE IF EXISTS temp.staged")
        self.conn.execute("DROP TABLE IF EXISTS temp.rejected")
        self.conn.execute(
            "CREATE TEMP TABLE staged (row INTEGER, order_id TEXT, digest TEXT, vals TEXT, "
            "record TEXT, nfields INTEGER)"
        )
        self.conn.execute(
            "CREATE TEMP TABLE rejected (row INTEGER, order_id TEXT, field TEXT, raw TEXT, "
            "reason TEXT, record TEXT)"
        )

    def stage(self, rows: Sequence[StagedRow]) -> None:
        self.stage_prepared([staged_tuple(r.row, r.order_id, r.vals, r.record) for r in rows])

    def stage_prepared(self, staged: Sequence[StagedTuple]) -> None:
        self.rows_read += len(staged)
        self.conn.executemany(
            "INSERT INTO temp.staged(row, order_id, digest, vals, record, nfields) "
            "VALUES(?,?,?,?,?,?)",
            staged,
        )

    def reject(self, rows: Sequence[BadRow], *, distinct_rows: int) -> None:
        self.rows_read += distinct_rows
        self.conn.executemany(
            "INSERT INTO temp.rejected(row, order_id, field, raw, reason, record) "
            "VALUES(?,?,?,?,?,?)",
            [(r.row, r.order_id, r.field, r.raw, r.reason, r.record) for r in rows],
        )

    def abort(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        self.conn.execute("DROP TABLE IF EXISTS temp.staged")
        self.conn.execute("DROP TABLE IF EXISTS temp.rejected")

    def commit(
        self,
        *,
        now: _dt.datetime,
        as_of: _dt.datetime,
        mapping_digest: str,
        deleted: int = 0,
        complete: bool = True,
        problems: Sequence[str] = (),
        on_progress: Any = None,
        proposals: str | None = None,
        approval_window: _dt.timedelta = _dt.timedelta(minutes=30),
        partial_diff: bool = False,
    ) -> RunInfo:
        """Apply the staged run. ``proposals`` ("shadow" or "approve") writes proposals instead
        of claims; ``partial_diff`` (a quarantine re-try) withdraws nothing."""
        self.proposals = proposals
        self.expires_at = None if proposals != "approve" else _iso(now + approval_window)
        self.partial = partial_diff
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")  # staging was outside: readers and writers went on
            # indexed once staged (cheaper than maintaining them per insert); without them the
            # withdrawal and duplicate look-ups scan the staged rows once per order
            conn.execute("CREATE INDEX temp.staged_order ON staged(order_id)")
            conn.execute("CREATE INDEX temp.rejected_order ON rejected(order_id)")
            self._flag_duplicates()
            run_id = int(conn.execute(
                "INSERT INTO runs(source, started_at, location, fingerprint, status, as_of) "
                "VALUES(?,?,?,?,?,?)",
                (self.source, _iso(self.started_at), self.location, self.fingerprint,
                 "running", _iso(as_of)),
            ).lastrowid or 0)
            quarantined = self._quarantine(run_id, now, mapping_digest)
            changed = claims = 0
            if complete:
                changed, claims = self._diff(run_id, now, as_of, on_progress)
                status, error = "ok", None
            else:
                status, error = "partial", "; ".join(problems)[:1000] or "partial export"
            conn.execute(
                "UPDATE runs SET finished_at=?, status=?, rows_read=?, rows_changed=?, "
                "rows_quarantined=?, rows_deleted=?, claims=?, error=? WHERE run_id=?",
                (_iso(now), status, self.rows_read, changed, quarantined, deleted, claims, error,
                 run_id),
            )
            conn.execute("COMMIT")
        except BaseException:
            self.abort()
            raise
        conn.execute("DROP TABLE IF EXISTS temp.staged")
        conn.execute("DROP TABLE IF EXISTS temp.rejected")
        info = self.store.last_run(self.source)
        assert info is not None  # the row was just written in this transaction
        return info

    def _flag_duplicates(self) -> None:
        dups = self.conn.execute(
            "SELECT order_id, group_concat(row) FROM (SELECT order_id, row FROM temp.staged "
            "UNION ALL SELECT DISTINCT order_id, row FROM temp.rejected WHERE order_id "
            "IS NOT NULL) GROUP BY order_id HAVING count(DISTINCT row) > 1"
        ).fetchall()
        for order_id, rows in dups:
            row_list = ", ".join(sorted(set(rows.split(",")), key=int))
            reason = f"order id {order_id} appears in rows {row_list} of one export"
            self.conn.execute(
                "INSERT INTO temp.rejected(row, order_id, field, raw, reason, record) "
                "SELECT row, order_id, 'order_id', order_id, ?, record FROM temp.staged "
                "WHERE order_id=?",
                (reason, order_id),
            )
            self.conn.execute("DELETE FROM temp.staged WHERE order_id=?", (order_id,))

    def _quarantine(self, run_id: int, now: _dt.datetime, mapping_digest: str) -> int:
        conn = self.conn
        # this run's list replaces the previous one: earlier open rows of the source close
        # (a re-try replaces only the rows it re-tried: those kept under another mapping)
        conn.execute(
            "UPDATE quarantine SET closed_at=?, closed_why='superseded by run ' || ? "
            "WHERE source=? AND closed_at IS NULL" + (" AND mapping != ?" if self.partial else ""),
            (_iso(now), run_id, self.source, *((mapping_digest,) if self.partial else ())),
        )
        conn.execute(
            "INSERT INTO quarantine(source, run_id, location, row, order_id, field, raw, reason, "
            "record, mapping, created_at) SELECT ?, ?, ?, row, order_id, field, raw, reason, "
            "record, ?, ? FROM temp.rejected ORDER BY row",
            (self.source, run_id, self.location, mapping_digest, _iso(now)),
        )
        return int(conn.execute("SELECT count(DISTINCT row) FROM temp.rejected").fetchone()[0])

    def _diff(self, run_id: int, now: _dt.datetime, as_of: _dt.datetime,
              on_progress: Any) -> tuple[int, int]:
        conn = self.conn
        source = self.source
        hlc = self.store.next_hlc(now)
        received, as_of_text = _iso(now), _iso(as_of)
        changed = claims = 0
        batch: list[tuple[Any, ...]] = []
        state: list[tuple[Any, ...]] = []

        def flush() -> None:
            self._write_claims(batch)
            conn.executemany(
                "INSERT INTO source_state(source, order_id, digest, vals) VALUES(?,?,?,?) "
                "ON CONFLICT(source, order_id) DO UPDATE SET digest=excluded.digest, "
                "vals=excluded.vals",
                state,
            )
            batch.clear()
            state.clear()

        listed_before = self.store.source_order_count(source)
        # one pass over the staged rows finds what is new or changed (``old_vals`` NULL: new)
        conn.execute("DROP TABLE IF EXISTS temp.delta")
        conn.execute(
            "CREATE TEMP TABLE delta AS SELECT s.rowid AS rid, old.vals AS old_vals "
            "FROM temp.staged s LEFT JOIN source_state old "
            "ON old.source=? AND old.order_id=s.order_id "
            "WHERE old.digest IS NULL OR old.digest != s.digest",
            (source,),
        )
        staged = int(conn.execute("SELECT count(*) FROM temp.staged").fetchone()[0])
        new = int(conn.execute(
            "SELECT count(*) FROM temp.delta WHERE old_vals IS NULL").fetchone()[0])
        if self.proposals is None and new:
            changed, claims = self._claim_new(run_id, as_of_text, received, hlc)
            if on_progress is not None:
                on_progress(changed)
        only_changed = "AND d.old_vals IS NOT NULL" if self.proposals is None else ""
        top = int(conn.execute("SELECT coalesce(max(rowid), 0) FROM temp.delta").fetchone()[0])
        for low in range(0, top, 5000):  # in slices: memory stays bounded on a huge export
            rows = conn.execute(
                "SELECT s.order_id, s.digest, s.vals, d.old_vals FROM temp.delta d "
                "JOIN temp.staged s ON s.rowid = d.rid "
                f"WHERE d.rowid > ? AND d.rowid <= ? {only_changed}",
                (low, low + 5000),
            ).fetchall()
            changed, claims = self._claim_rows(rows, run_id, as_of_text, received, hlc,
                                               batch, state, changed, claims)
            flush()
            if on_progress is not None:
                on_progress(min(low + 5000, top))
        conn.execute("DROP TABLE temp.delta")
        if listed_before == staged - new:
            return changed, claims  # every order listed before is staged again: none is gone
        return self._withdraw(run_id, as_of_text, received, hlc, changed, claims)

    def _claim_new(self, run_id: int, as_of_text: str, received: str, hlc: str
                   ) -> tuple[int, int]:
        """Orders the source never stated before: every field is a claim, written in SQL (their
        staged ``vals`` are already the canonical text a claim set holds)."""
        conn, source = self.conn, self.source
        new = ("FROM temp.delta d JOIN temp.staged s ON s.rowid = d.rid "
               "WHERE d.old_vals IS NULL")
        claims = int(conn.execute(f"SELECT coalesce(sum(s.nfields), 0) {new}").fetchone()[0])
        changed = conn.execute(
            "INSERT OR IGNORE INTO claim_sets(set_id, source, order_id, run_id, source_rev, as_of, "
            "received_at, hlc, present, vals, based_on) SELECT ? || s.order_id, ?, s.order_id, "
            f"?, ?, ?, ?, ?, 1, s.vals, '[]' {new} ORDER BY s.rowid",
            (f"{source}:{run_id}:", source, run_id, str(run_id), as_of_text, received, hlc),
        ).rowcount
        conn.execute(f"INSERT OR IGNORE INTO dirty(order_id) SELECT s.order_id {new}")
        conn.execute(
            "INSERT INTO source_state(source, order_id, digest, vals) "
            f"SELECT ?, s.order_id, s.digest, s.vals {new}",
            (source,),
        )
        return changed, claims

    def _claim_rows(self, rows: list[tuple[Any, ...]], run_id: int, as_of_text: str,
                    received: str, hlc: str, batch: list[tuple[Any, ...]],
                    state: list[tuple[Any, ...]], changed: int, claims: int) -> tuple[int, int]:
        source = self.source
        for order_id, digest, vals_text, old_text in rows:
            vals = json.loads(vals_text)
            if old_text is not None:
                old = json.loads(old_text)
                vals_changed = {
                    k: v for k, v in vals.items()
                    if k not in old or canonical(old[k]) != canonical(v)
                }
                vals_changed.update({k: None for k in old if k not in vals})
            else:
                vals_changed = vals
            changed += 1
            claims += len(vals_changed)
            batch.append((f"{source}:{run_id}:{order_id}", source, order_id, run_id, str(run_id),
                          as_of_text, received, hlc, 1, canonical(vals_changed)))
            state.append((source, order_id, digest, vals_text))
        return changed, claims

    def _withdraw(self, run_id: int, as_of_text: str, received: str, hlc: str, changed: int,
                  claims: int) -> tuple[int, int]:
        conn, source = self.conn, self.source
        batch: list[tuple[Any, ...]] = []
        if self.partial:
            return changed, claims
        # orders gone from the export (and not merely quarantined in it): withdrawn, not cancelled
        gone = conn.execute(
            "SELECT old.order_id, old.vals FROM source_state old WHERE old.source=? "
            "AND NOT EXISTS (SELECT 1 FROM temp.staged s WHERE s.order_id=old.order_id) "
            "AND NOT EXISTS (SELECT 1 FROM temp.rejected r WHERE r.order_id=old.order_id)",
            (source,),
        ).fetchall()
        for order_id, old_text in gone:
            fields = dict.fromkeys(json.loads(old_text))
            changed += 1
            claims += len(fields)
            batch.append((f"{source}:{run_id}:{order_id}", source, order_id, run_id, str(run_id),
                          as_of_text, received, hlc, 0, canonical(fields)))
        if batch:
            self._write_claims(batch)
            conn.executemany("DELETE FROM source_state WHERE source=? AND order_id=?",
                             [(source, g[0]) for g in gone])
        return changed, claims

    def _write_claims(self, batch: list[tuple[Any, ...]]) -> None:
        """Claim sets, or proposals when the source's mode holds them back."""
        if not batch:
            return
        if self.proposals is None:
            self.conn.executemany(
                "INSERT OR IGNORE INTO claim_sets(set_id, source, order_id, run_id, source_rev, "
                "as_of, received_at, hlc, present, vals, based_on) "
                "VALUES(?,?,?,?,?,?,?,?,?,?,'[]')",
                batch,
            )
            self.conn.executemany("INSERT OR IGNORE INTO dirty(order_id) VALUES(?)",
                                  [(b[2],) for b in batch])
            return
        state = "pending" if self.proposals == "approve" else "shadow"
        self.conn.executemany(
            "INSERT OR IGNORE INTO proposals(proposal_id, source, order_id, vals, as_of, "
            "created_at, expires_at, state) VALUES(?,?,?,?,?,?,?,?)",
            [(b[0], b[1], b[2], b[9] if b[8] else canonical({"__gone__": True}), b[5], b[6],
              self.expires_at, state) for b in batch],
        )
