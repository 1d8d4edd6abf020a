"""The store's tables (``SCHEMA``: claims, runs, quarantine, views, results; ``DEVICE_SCHEMA``:
devices, routes, streams) and the migration of a file an older gateway wrote (``create`` runs
both on a connection).

The tables are DDL, not sqlite-utils' ``Table.create``: the hot stream tables (``changelog``,
``route_members``, ``device_orders``, ``source_state``, ``source_records``, ``dirty``) are
``WITHOUT ROWID`` (one B-tree, clustered on the key), which ``create()`` cannot say; the
migration, which inspects and adds columns, is sqlite-utils' (``columns_dict``,
``add_column``)."""

from __future__ import annotations

import sqlite3

import sqlite_utils

from gateway.credentials import hash_password, is_hashed
from gateway.store.sql import canonical_json, text_digest
from sync.model import OrderView
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
CREATE TABLE IF NOT EXISTS source_records (  -- gateway.store.records: a source's record memory
    source TEXT NOT NULL, row INTEGER NOT NULL, rawhash BLOB NOT NULL, order_id TEXT NOT NULL,
    PRIMARY KEY (source, row)
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
    rules TEXT,  -- the view's settled rule inputs (sync.rules.rule_inputs), canonical JSON
    one_set TEXT  -- a one-set view's claim set (body '', rules NULL: built from it when read)
);
CREATE INDEX IF NOT EXISTS views_due ON views(deadline) WHERE deadline IS NOT NULL;
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

DEVICE_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device TEXT PRIMARY KEY, driver TEXT NOT NULL, password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'active', changed_at TEXT,
    previous_driver TEXT, rebound_at TEXT
);
CREATE TABLE IF NOT EXISTS route_members (
    driver TEXT NOT NULL, order_id TEXT NOT NULL, PRIMARY KEY (driver, order_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS route_warnings (
    driver TEXT NOT NULL, order_id TEXT NOT NULL, warnings TEXT NOT NULL,
    PRIMARY KEY (driver, order_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS streams (
    device TEXT PRIMARY KEY, first_seq INTEGER NOT NULL DEFAULT 1,
    last_seq INTEGER NOT NULL DEFAULT 0, applied_seq INTEGER NOT NULL DEFAULT 0,
    acked_at TEXT  -- when the device last reported its applied seq (its stream ack)
);
CREATE TABLE IF NOT EXISTS changelog (
    device TEXT NOT NULL, seq INTEGER NOT NULL, order_id TEXT NOT NULL, body TEXT,
    at TEXT NOT NULL, PRIMARY KEY (device, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS device_orders (
    device TEXT NOT NULL, order_id TEXT NOT NULL, digest TEXT NOT NULL,
    PRIMARY KEY (device, order_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    device TEXT NOT NULL, event_id TEXT NOT NULL, order_id TEXT NOT NULL,
    action TEXT NOT NULL, received_at TEXT NOT NULL, body TEXT NOT NULL, outcome TEXT NOT NULL,
    PRIMARY KEY (device, event_id)
);
CREATE INDEX IF NOT EXISTS events_order ON events(order_id, action);
CREATE TABLE IF NOT EXISTS dismissals (
    device TEXT NOT NULL, event_id TEXT NOT NULL, dismissal_id TEXT NOT NULL,
    at TEXT NOT NULL, PRIMARY KEY (device, event_id)
);
CREATE TABLE IF NOT EXISTS device_status (
    device TEXT PRIMARY KEY, online INTEGER NOT NULL, at TEXT NOT NULL, body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS commands (
    command_id TEXT PRIMARY KEY, client TEXT NOT NULL, body TEXT NOT NULL, reply TEXT NOT NULL,
    at TEXT NOT NULL
);
"""


def create(db: sqlite_utils.Database) -> None:
    """Create the tables a new file lacks, and migrate the ones an older gateway wrote."""
    older = set(db.table_names())
    db.conn.executescript(SCHEMA)
    db.conn.executescript(DEVICE_SCHEMA)
    migrate(db, older)


def migrate(db: sqlite_utils.Database, older: set[str]) -> None:
    """Bring a store written by an older gateway up to this schema (``older``: the tables the
    file held before ``SCHEMA`` ran; empty for a new file).

    * ``views.rules`` (rule inputs beside each view): added, and filled from the stored bodies.
    * ``device_orders.body`` (a copy of each body a device was last sent) becomes ``digest``
      (the body's ``text_digest``): the body is the stored view with the route's warnings.
    * ``route_warnings`` (the warnings each driver's devices were last sent): new. An older
      gateway re-sent whole routes, so its devices hold the warnings the rules give now; the
      meta key ``route_warnings`` = ``unknown`` asks the next refresh to record them (without
      sending anything).
    * ``devices.password`` (plain) becomes ``password_hash`` (salted hashes only).
    * ``events`` keyed by ``event_id`` becomes keyed by ``(device, event_id)``: event ids are
      unique per device, and one device's id must not make another's event a "duplicate".
    * ``devices`` gains ``state``, ``changed_at``, ``previous_driver``, ``rebound_at``.
    * ``streams`` gains ``acked_at`` (when the device last reported what it applied): NULL
      until its next report, shown as "never" until then.
    * ``views`` gains ``one_set`` (``gateway.store.views``): NULL in every view already stored,
      whose body stays as it is.
    * ``views_deadline`` (every view) becomes ``views_due`` (only views with a deadline: the
      few with an open conflict; ``mark_due`` reads no other).
    """
    conn = db.conn
    if "rules" not in db.table("views").columns_dict:
        conn.execute("BEGIN IMMEDIATE")
        try:
            db.table("views").add_column("rules", str)
            rows = conn.execute("SELECT order_id, body FROM views").fetchall()
            conn.executemany("UPDATE views SET rules=? WHERE order_id=?", [
                (canonical_json(rule_inputs(OrderView.model_validate_json(body))), oid)
                for oid, body in rows])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    if "body" in db.table("device_orders").columns_dict:
        conn.create_function("crossdock_digest", 1, text_digest, deterministic=True)
        conn.execute("BEGIN IMMEDIATE")
        try:
            if "body" in db.table("device_orders").columns_dict:
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
    if "password" in {r[1] for r in conn.execute("PRAGMA table_info(devices)")}:
        _hash_device_passwords(conn)
    if _primary_key(conn, "events") == ["event_id"]:
        _key_events_by_device(conn)
    device_columns = {r[1] for r in conn.execute("PRAGMA table_info(devices)")}
    for column, kind in _DEVICE_STATE:
        if column not in device_columns:
            conn.execute(f"ALTER TABLE devices ADD COLUMN {column} {kind}")
    _add_column(conn, "streams", "acked_at")
    _add_column(conn, "views", "one_set")
    conn.execute("DROP INDEX IF EXISTS views_deadline")
    if "views" in older and "route_warnings" not in older:
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('route_warnings', 'unknown')")


_DEVICE_STATE = (("state", "TEXT NOT NULL DEFAULT 'active'"), ("changed_at", "TEXT"),
                 ("previous_driver", "TEXT"), ("rebound_at", "TEXT"))
"""Columns ``devices`` gained for revoke, rotate and bind (added to an older store as they
are: every device active, never re-bound)."""


def _add_column(conn: sqlite3.Connection, table: str, column: str) -> None:
    """Add a TEXT column, NULL in every row, unless the table has it."""
    if column not in {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}:
        try:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")
        except sqlite3.OperationalError as exc:  # another process added it meanwhile
            if "duplicate column" not in str(exc):
                raise


def _primary_key(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in sorted(conn.execute(f"PRAGMA table_info({table})"),
                                 key=lambda r: r[5]) if r[5]]


def _hash_device_passwords(conn: sqlite3.Connection) -> None:
    """``devices.password`` (plain text) becomes ``password_hash`` (salted, the broker's
    format): the tablets keep their passwords, the store no longer does. The old pages are
    overwritten (``secure_delete``) and the WAL checkpointed, so no plain copy stays."""
    conn.execute("PRAGMA secure_delete=ON")
    conn.execute("BEGIN IMMEDIATE")
    try:
        if "password" in {r[1] for r in conn.execute("PRAGMA table_info(devices)")}:
            rows = conn.execute("SELECT device, password FROM devices").fetchall()
            conn.executemany("UPDATE devices SET password=? WHERE device=?", [
                (p if is_hashed(p) else hash_password(p), d) for d, p in rows])
            conn.execute("ALTER TABLE devices RENAME COLUMN password TO password_hash")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA secure_delete=OFF")


def _key_events_by_device(conn: sqlite3.Connection) -> None:
    """``events`` keyed by ``event_id`` alone becomes keyed by ``(device, event_id)``: every
    stored event is kept, with its device; later ones are de-duplicated per device."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if _primary_key(conn, "events") == ["event_id"]:  # (again: another process may have)
            conn.execute("CREATE TABLE events_by_device (device TEXT NOT NULL, event_id TEXT "
                         "NOT NULL, order_id TEXT NOT NULL, action TEXT NOT NULL, received_at "
                         "TEXT NOT NULL, body TEXT NOT NULL, outcome TEXT NOT NULL, "
                         "PRIMARY KEY (device, event_id))")
            conn.execute("INSERT INTO events_by_device SELECT device, event_id, order_id, "
                         "action, received_at, body, outcome FROM events")
            conn.execute("DROP TABLE events")
            conn.execute("ALTER TABLE events_by_device RENAME TO events")
            conn.execute("CREATE INDEX IF NOT EXISTS events_order ON events(order_id, action)")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
