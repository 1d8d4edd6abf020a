"""The tablet's SQLite store (the only module that imports sqlite3 / sqlite-utils).

Tables:

=============  ================================================================================
table          what
=============  ================================================================================
views          order_id PK, seq of the entry that set it, the OrderView as JSON (defaults left out)
meta           key PK, JSON value: last applied seq and the receiver state, HLC clock, the
               gateway's last status (source freshness), last sync time, presence, counters
outbox         event_id PK, created_at, payload (the encoded envelope, resent byte for byte),
               attempts, last_sent_at; insertion order is rowid order
local_actions  event_id PK, order_id, action, at, acked, view_seen, event JSON: the driver's
               actions overlaid on the route until the gateway's view reflects them
refused        event_id PK, order_id, action, event JSON, reason, refused_at, dismissed_at,
               dismissal_id: actions the gateway turned down, moved here from the outbox (never
               deleted); shown until the driver dismisses them, kept after that
=============  ================================================================================

Every public write is ONE ``BEGIN IMMEDIATE`` transaction (an entry and its ``seq`` together; an
action and its outbox row together). The connection is in driver autocommit mode so Python never
opens a transaction behind our back.

Durability is chosen per transaction (WAL; ``PRAGMA synchronous`` can only change outside a
transaction, so ``_tx`` sets it just before ``BEGIN`` when the level differs from the last one):

* ``synchronous=FULL`` (the default, every write but the stream's): COMMIT waits for the WAL to
  reach the disk, so a driver action in the outbox survives a power cut — it exists nowhere
  else until the gateway acks it.
* ``synchronous=NORMAL`` for applying stream entries and snapshots: COMMIT does not fsync. The
  database stays consistent, but a power cut may lose the last few commits. Each entry is
  committed together with its ``seq``, so what is lost is a tail of the stream, and the agent's
  ``seq`` goes back with it: on restart it asks for ``seq > last`` and the gateway replays
  exactly that tail (or sends a snapshot). Nothing is applied twice or skipped. The gateway may
  have been told a higher ``Applied`` seq; that only drives compaction, and a request behind
  the compacted log is answered by a snapshot. The next FULL commit (an action) syncs the WAL,
  these entries included.

A ``Store`` is not thread-safe by itself: its owner (the ``Agent``) serialises calls with one
lock. Two processes on one file (``agent run`` and ``agent act``) are fine: writes wait for
each other (busy timeout) instead of failing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlite_utils
from pydantic import TypeAdapter, ValidationError

from agent.errors import StoreError
from agent.model import LocalAction, OutboxItem, RefusedAction
from sync.codec import encode
from sync.envelope import DriverEvent, DriverEventMsg, Status, ViewChange
from sync.hlc import Hlc, observe, tick
from sync.model import OrderView
from sync.streams import Receiver

SCHEMA_VERSION = 1
_BUSY_TIMEOUT_S = 10.0
_COUNTERS: TypeAdapter[dict[str, int]] = TypeAdapter(dict[str, int])


def _view_text(view: OrderView) -> str:
    """A view as stored: its JSON with fields at their default left out, as the gateway sends
    and stores it (``OrderView.model_validate_json`` fills them in again: an equal view). A
    third smaller than every field spelled out, so a stream commit writes fewer pages."""
    return view.model_dump_json(exclude_defaults=True)


class Store:
    """The tablet's durable state. Open with ``Store.open(path)``; ``close()`` when done."""

    def __init__(self, db: sqlite_utils.Database, path: Path) -> None:
        self._db = db
        self._path = path
        self._durable = True  # the connection's synchronous level: FULL (True) or NORMAL
        self._data_version: int | None = None  # PRAGMA data_version last seen
        self._receiver: Receiver | None = None  # as this Store last committed it; receiver()

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path) -> Store:
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

    # -- the stream --------------------------------------------------------------------------

    def receiver(self) -> Receiver:
        """The stream receiver's state: last applied ``seq`` and the ``after`` last asked for.

        Once this Store has committed the receiver itself it answers from memory: the agent
        that follows the stream is the receiver's one writer (``agent act`` and other readers
        of the file never write it, so they always read it from the file). Each write still
        checks the stored ``seq`` inside its transaction."""
        if self._receiver is not None:
            return self._receiver
        state = self._get("receiver") or {}
        return Receiver(last=int(state.get("last", 0)), asked_after=state.get("asked_after"))

    def _put_receiver(self, receiver: Receiver) -> None:
        self._put("receiver", {"last": receiver.last, "asked_after": receiver.asked_after})

    def save_receiver(self, receiver: Receiver) -> None:
        """Store the receiver's state alone (after a gap: the ``after`` it asked for)."""
        self._receiver = None  # checked against the file
        with self._tx():
            if receiver.last != self.receiver().last:
                raise StoreError(
                    f"tablet store {self._path}: receiver moved from seq {self.receiver().last}"
                    f" to {receiver.last} without an entry"
                )
            self._put_receiver(receiver)
        self._receiver = receiver

    def apply_change(self, seq: int, order_id: str, view: OrderView | None, *, at: datetime
                     ) -> None:
        """Apply stream entry ``seq`` (must be last + 1): ``apply_changes`` with one entry and
        no stamp to observe (the agent hands every entry to ``apply_changes``)."""
        self.apply_changes((ViewChange(seq=seq, order_id=order_id, view=view),), at=at)

    def apply_changes(
        self, entries: Sequence[ViewChange], *, at: datetime,
        remote: Hlc | None = None, node: str = "", now_ms: int = 0,
    ) -> None:
        """Apply consecutive stream entries (the first must be last + 1) in ONE transaction:
        each order's view, and the last entry's ``seq``, together; all of them or none.

        An entry's ``view=None`` removes the order from the route. Local actions already
        acked for an order the entries touch are dropped (the gateway's view now reflects
        them); pending ones stay, marked as having seen a later view. The entries' stamp,
        ``remote`` (with our ``node`` and the wall clock ``now_ms``), is observed here
        (``sync.hlc.observe``) from the clock this transaction reads anyway, and stored in it:
        one COMMIT for the lot.

        Cheap per entry: an order changed twice keeps only its last entry (the same outcome
        in one transaction), the views are written with one ``executemany`` per kind, the
        local actions of all the orders are found with one query, meta is read and
        written once.
        """
        if not entries:
            return
        first, seq = entries[0].seq, entries[-1].seq
        final: dict[str, ViewChange] = {}  # order id -> its last entry: the same outcome
        for i, entry in enumerate(entries):
            if entry.seq != first + i:
                raise StoreError(
                    f"tablet store {self._path}: entries {[e.seq for e in entries]} "
                    "are not consecutive"
                )
            final[entry.order_id] = entry
        upserts: list[tuple[str, int, str]] = []
        removals: list[tuple[str]] = []
        for entry in final.values():
            if entry.view is None:
                removals.append((entry.order_id,))
            else:
                upserts.append((entry.order_id, entry.seq, _view_text(entry.view)))
        conn = self._db.conn
        self._receiver = None  # until these entries are committed
        with self._tx(durable=False):
            state = dict(conn.execute(
                "SELECT key, value FROM meta WHERE key IN ('receiver', 'hlc')").fetchall())
            last = int(json.loads(state.get("receiver", "{}")).get("last", 0))
            if first != last + 1:
                raise StoreError(
                    f"tablet store {self._path}: entry {first} does not follow last seq {last}"
                )
            if removals:
                conn.executemany("DELETE FROM views WHERE order_id = ?", removals)
            if upserts:
                conn.executemany(
                    "INSERT INTO views (order_id, seq, json) VALUES (?, ?, ?) "
                    "ON CONFLICT(order_id) DO UPDATE SET seq = excluded.seq, json = excluded.json",
                    upserts,
                )
            # the table holds only actions not yet reflected by a view (a handful): one read of
            # its order ids (an index scan) answers for every order of the batch
            touched = [row for row in conn.execute(
                "SELECT DISTINCT order_id FROM local_actions") if row[0] in final]
            if touched:
                conn.executemany(
                    "DELETE FROM local_actions WHERE order_id = ? AND acked = 1", touched
                )
                conn.executemany(
                    "UPDATE local_actions SET view_seen = 1 WHERE order_id = ?", touched
                )
            meta = {"receiver": {"last": seq, "asked_after": None},
                    "last_sync_at": at.isoformat()}
            if remote is not None:
                stored = self._stored_hlc(state.get("hlc"), node)
                hlc = observe(stored, remote, now_ms)
                if hlc > stored:
                    meta["hlc"] = str(hlc)
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [(key, json.dumps(value)) for key, value in meta.items()],
            )
        self._receiver = Receiver(last=seq, asked_after=None)

    def apply_snapshot(self, seq: int, views: Sequence[OrderView], *, at: datetime) -> None:
        """Replace every view with a snapshot taken at ``seq``; the stream resumes at seq + 1."""
        self._receiver = None  # until the snapshot is committed
        with self._tx(durable=False):
            self._db.execute("DELETE FROM views")
            for view in views:
                self._db.execute(
                    "INSERT INTO views (order_id, seq, json) VALUES (?, ?, ?) "
                    "ON CONFLICT(order_id) DO UPDATE SET seq = excluded.seq, json = excluded.json",
                    [view.order_id, seq, _view_text(view)],
                )
            self._db.execute("DELETE FROM local_actions WHERE acked = 1")
            self._db.execute("UPDATE local_actions SET view_seen = 1")
            self._put_receiver(Receiver(last=seq, asked_after=None))
            self._put("last_sync_at", at.isoformat())
        self._receiver = Receiver(last=seq, asked_after=None)

    def views(self) -> list[OrderView]:
        rows = self._db.execute("SELECT json FROM views ORDER BY order_id").fetchall()
        return [OrderView.model_validate_json(row[0]) for row in rows]

    def view(self, order_id: str) -> OrderView | None:
        row = self._db.execute("SELECT json FROM views WHERE order_id = ?", [order_id]).fetchone()
        return None if row is None else OrderView.model_validate_json(row[0])

    # -- the outbox --------------------------------------------------------------------------

    def record_action(self, message: DriverEventMsg, *, created_at: datetime) -> None:
        """Record a driver action: its local overlay and its outbox row in ONE transaction."""
        event = message.body
        with self._tx():
            exists = self._db.execute(
                "SELECT 1 FROM outbox WHERE event_id = ?", [event.event_id]
            ).fetchone()
            if exists is not None:
                raise StoreError(f"tablet store {self._path}: event {event.event_id} exists")
            self._db.execute(
                "INSERT INTO outbox (event_id, created_at, payload, attempts) VALUES (?, ?, ?, 0)",
                [event.event_id, created_at.isoformat(), encode(message).decode()],
            )
            self._db.execute(
                "INSERT INTO local_actions (event_id, order_id, at, acked, view_seen, event) "
                "VALUES (?, ?, ?, 0, 0, ?)",
                [event.event_id, event.order_id, event.at.isoformat(), event.model_dump_json()],
            )

    def ack(self, event_ids: Iterable[str]) -> list[str]:
        """The gateway stored these events: delete their outbox rows. Returns the ids removed.

        A local action whose order already got a later view is dropped; the others stay as
        "sent" until the next view of their order arrives.
        """
        removed: list[str] = []
        with self._tx():
            for event_id in event_ids:
                cur = self._db.execute("DELETE FROM outbox WHERE event_id = ?", [event_id])
                if cur.rowcount:
                    removed.append(event_id)
                self._db.execute(
                    "DELETE FROM local_actions WHERE event_id = ? AND view_seen = 1", [event_id]
                )
                self._db.execute(
                    "UPDATE local_actions SET acked = 1 WHERE event_id = ?", [event_id]
                )
        return removed

    def refuse(self, refusals: Iterable[tuple[str, str]], *, at: datetime) -> list[str]:
        """The gateway refused these ``(event_id, reason)``: each outbox row moves to
        ``refused`` with its reason and ``at``, and its local overlay goes, all in ONE
        transaction. Returns the ids moved (an id no longer in the outbox is a resent ack)."""
        moved: list[str] = []
        with self._tx():
            for event_id, reason in refusals:
                row = self._db.execute(
                    "SELECT payload FROM outbox WHERE event_id = ?", [event_id]
                ).fetchone()
                if row is None:
                    continue
                event = DriverEventMsg.model_validate_json(row[0]).body
                self._db.execute(
                    "INSERT OR IGNORE INTO refused (event_id, order_id, action, event, reason, "
                    "refused_at) VALUES (?, ?, ?, ?, ?, ?)",
                    [event_id, event.order_id, event.action, event.model_dump_json(), reason,
                     at.isoformat()],
                )
                self._db.execute("DELETE FROM outbox WHERE event_id = ?", [event_id])
                self._db.execute("DELETE FROM local_actions WHERE event_id = ?", [event_id])
                moved.append(event_id)
        return moved

    def refused(self, *, dismissed: bool = False) -> list[RefusedAction]:
        """Refused actions, oldest first: those not dismissed (all with ``dismissed=True``)."""
        where = "" if dismissed else " WHERE dismissed_at IS NULL"
        rows = self._db.execute(
            "SELECT event, reason, refused_at, dismissed_at, dismissal_id FROM refused"
            f"{where} ORDER BY refused_at, rowid"
        ).fetchall()
        return [
            RefusedAction(
                event_id=(event := DriverEvent.model_validate_json(event_json)).event_id,
                order_id=event.order_id,
                action=event.action,
                at=event.at,
                reason=reason,
                refused_at=datetime.fromisoformat(refused_at),
                dismissed_at=None if dismissed_at is None else datetime.fromisoformat(dismissed_at),
                dismissal_id=dismissal_id,
                note=event.note,
            )
            for event_json, reason, refused_at, dismissed_at, dismissal_id in rows
        ]

    def dismiss(self, event_id: str, message: DriverEventMsg, *, at: datetime) -> None:
        """The driver dismissed refused ``event_id``: the dismissal is recorded on its row and
        ``message`` (the ``dismiss`` event telling the gateway) goes to the outbox, in ONE
        transaction. No local overlay: a dismissal changes no stop."""
        with self._tx():
            cur = self._db.execute(
                "UPDATE refused SET dismissed_at = ?, dismissal_id = ? "
                "WHERE event_id = ? AND dismissed_at IS NULL",
                [at.isoformat(), message.body.event_id, event_id],
            )
            if not cur.rowcount:
                raise StoreError(
                    f"tablet store {self._path}: no refused action {event_id} to dismiss")
            self._db.execute(
                "INSERT INTO outbox (event_id, created_at, payload, attempts) VALUES (?, ?, ?, 0)",
                [message.body.event_id, at.isoformat(), encode(message).decode()],
            )

    def pending(self) -> list[OutboxItem]:
        """The outbox, oldest first."""
        return [item for item, _ in self._pending_rows()]

    def pending_payloads(self) -> list[tuple[str, bytes]]:
        """``(event_id, encoded envelope)`` of the outbox, oldest first: what to resend."""
        return [(item.event_id, payload) for item, payload in self._pending_rows()]

    def changed_elsewhere(self) -> bool:
        """True when another connection committed to the file since the last call (the first
        call: since it was opened). One ``PRAGMA data_version``: no disk read."""
        version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
        changed = version != self._data_version
        self._data_version = version
        return changed

    def unsent_payloads(self) -> list[tuple[str, bytes]]:
        """``pending_payloads`` never sent yet (recorded by another process), oldest first."""
        rows = self._db.execute(
            "SELECT event_id, payload FROM outbox WHERE attempts = 0 ORDER BY rowid").fetchall()
        return [(str(event_id), str(payload).encode()) for event_id, payload in rows]

    def _pending_rows(self) -> list[tuple[OutboxItem, bytes]]:
        rows = self._db.execute(
            "SELECT event_id, created_at, payload, attempts, last_sent_at FROM outbox "
            "ORDER BY rowid"
        ).fetchall()
        out = []
        for event_id, created_at, payload, attempts, last_sent_at in rows:
            try:
                message = DriverEventMsg.model_validate_json(payload)
            except ValidationError as exc:
                raise StoreError(
                    f"tablet store {self._path}: outbox row {event_id} is unreadable: {exc}"
                ) from None
            item = OutboxItem(
                event_id=event_id,
                created_at=datetime.fromisoformat(created_at),
                event=message.body,
                attempts=attempts,
                last_sent_at=None if last_sent_at is None else datetime.fromisoformat(last_sent_at),
            )
            out.append((item, payload.encode()))
        return out

    def outbox_size(self) -> int:
        row = self._db.execute("SELECT count(*) FROM outbox").fetchone()
        return int(row[0])

    def mark_sent(self, event_ids: Iterable[str], *, at: datetime) -> None:
        with self._tx():
            for event_id in event_ids:
                self._db.execute(
                    "UPDATE outbox SET attempts = attempts + 1, last_sent_at = ? "
                    "WHERE event_id = ?",
                    [at.isoformat(), event_id],
                )

    def local_actions(self) -> list[LocalAction]:
        rows = self._db.execute(
            "SELECT event, acked FROM local_actions ORDER BY at, rowid"
        ).fetchall()
        out = []
        for event_json, acked in rows:
            event = DriverEvent.model_validate_json(event_json)
            out.append(
                LocalAction(
                    event_id=event.event_id,
                    order_id=event.order_id,
                    action=event.action,
                    at=event.at,
                    acked=bool(acked),
                    reason=event.reason,
                    note=event.note,
                )
            )
        return out

    # -- clock, gateway status, presence, counters --------------------------------------------

    def next_stamp(self, node: str, now_ms: int, *, durable: bool = True) -> Hlc:
        """Tick the stored HLC and return the new stamp (one transaction: safe across processes).

        ``durable=False`` (the stamp of a status-like message: resync, applied, status) commits
        without fsync; a driver action's stamp stays FULL, with its outbox row."""
        with self._tx(durable=durable):
            stamp = tick(self._hlc(node), now_ms)
            self._put("hlc", str(stamp))
        return stamp

    def observe_stamp(self, stamp: Hlc) -> None:
        """Push the stored clock to a stamp the caller merged with ``sync.hlc.observe``."""
        with self._tx():
            if stamp > self._hlc(stamp.node):
                self._put("hlc", str(stamp))

    def hlc(self, node: str) -> Hlc:
        return self._hlc(node)

    def _hlc(self, node: str) -> Hlc:
        return self._stored_hlc(self._db.execute(
            "SELECT value FROM meta WHERE key = 'hlc'").fetchone(), node)

    @staticmethod
    def _stored_hlc(row: Any, node: str) -> Hlc:
        """The clock from meta's ``hlc`` value (a row, or its JSON text; None: not stored)."""
        if row is None:
            return Hlc.zero(node)
        text = json.loads(row if isinstance(row, str) else row[0])
        stored = Hlc.parse(text)
        return Hlc(stored.wall_ms, stored.counter, node)

    def save_gateway_status(self, status: Status, *, at: datetime) -> None:
        with self._tx():
            self._put("gateway_status", status.model_dump(mode="json"))
            self._put("gateway_status_received_at", at.isoformat())

    def gateway_status(self) -> Status | None:
        value = self._get("gateway_status")
        return None if value is None else Status.model_validate(value)

    def set_presence(self, online: bool, *, at: datetime) -> None:
        """Record that the session went online or offline at ``at`` (keeps the other side)."""
        with self._tx():
            self._put("online", online)
            self._put("online_since" if online else "offline_since", at.isoformat())

    def presence(self) -> tuple[bool, datetime | None, datetime | None]:
        """``(online, online_since, offline_since)`` as last recorded."""
        return (
            bool(self._get("online")),
            self._get_time("online_since"),
            self._get_time("offline_since"),
        )

    def last_sync_at(self) -> datetime | None:
        return self._get_time("last_sync_at")

    def touch_sync(self, *, at: datetime) -> None:
        """The gateway answered (an ack): we were in sync with it at ``at``."""
        with self._tx():
            self._put("last_sync_at", at.isoformat())

    def bump(self, counter: str, by: int = 1) -> int:
        """Add to a named counter (codec errors, duplicates, gaps...); returns the new value."""
        with self._tx():
            counters = self.counters()
            counters[counter] = counters.get(counter, 0) + by
            self._put("counters", counters)
        return counters[counter]

    def counters(self) -> dict[str, int]:
        value = self._get("counters")
        return {} if value is None else _COUNTERS.validate_python(value)
