"""The device side of the gateway store: registry, per-device streams, driver events, counters.

Tables live in the same SQLite file as the rest of the store (``Store`` creates them); this
module holds their SQL. A device's stream is a changelog with a gapless ``seq``: each entry is
one order's new view for that device's driver, or its removal. ``device_orders`` remembers the
digest of the body each device was last sent per order, so an identical view produces no
entry; the body itself is the order's stored view with the warnings recorded for the route
(``route_warnings``), which is what a snapshot sends once the changelog has been compacted.
(It kept a copy of every body: each change wrote its 1.7 KB view three times.)
``route_warnings`` holds the rule warnings each driver's devices were last sent per order (only
orders that have some), so a route sync builds bodies only for the orders that changed or
whose warnings did.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.credentials import hash_password
from gateway.errors import StoreError
from gateway.store.core import Store
from gateway.store.sql import rows_in, text_digest
from sync.model import OrderView, Warning

_COLUMNS = ("device, driver, password_hash, created_at, state, changed_at, previous_driver, "
            "rebound_at")


@dataclass(frozen=True)
class Device:
    """A registered tablet. ``password_hash`` is its broker password's salted hash
    (``gateway.credentials``); the password itself is only in the tablet's config file."""

    device: str
    driver: str
    password_hash: str
    created_at: str
    state: str = "active"  # or "revoked"
    changed_at: str | None = None  # last revoke, rotate or bind
    previous_driver: str | None = None  # bound to before ``rebound_at``
    rebound_at: str | None = None

    @property
    def revoked(self) -> bool:
        return self.state == "revoked"

    def driver_at(self, at: _dt.datetime) -> str:
        """The driver an event the tablet made at ``at`` is checked against: the previous one
        for an action made before the device was bound to another (sent late: it was offline,
        or not yet acknowledged)."""
        if (self.previous_driver is not None and self.rebound_at is not None
                and at < _dt.datetime.fromisoformat(self.rebound_at)):
            return self.previous_driver
        return self.driver


@dataclass(frozen=True)
class Entry:
    """One stream entry: ``body`` is the view's JSON, or None when the order left the route."""

    seq: int
    order_id: str
    body: str | None


MOVED_RESULT_OUTCOME = "refused: result for an order that moved to another driver: "
"""How the outcome of a driver's result for an order no longer on that driver's route begins
(``streams.commands`` writes it; kind ``moved_result``)."""


@dataclass(frozen=True)
class RefusedEvent:
    """A driver event the gateway kept but did not apply (``gateway refused``).

    ``kind``: ``moved_result`` for a result (delivered, failed, refused) recorded for an order
    that moved to another driver, a result dispatch should look at; ``refused`` otherwise.
    ``at``: when the driver recorded it (the tablet's clock); ``received_at``: when the
    gateway stored it; both ISO 8601 with offset. ``dismissed_at``: when the driver dismissed
    it on the tablet, None while shown there (or when the gateway records no dismissals).
    """

    event_id: str
    device: str
    driver: str
    order_id: str
    action: str
    kind: str
    reason: str
    at: str
    received_at: str
    dismissed_at: str | None


_JOIN_DISMISSALS = "LEFT JOIN dismissals d ON d.device = e.device AND d.event_id = e.event_id "
"""A dismissal names its refused event by device and event id (ids are unique per device)."""


class DeviceStore:
    """SQL for devices and streams, on a Store's connection (and inside its transactions)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.conn = store.conn

    # --- registry -----------------------------------------------------------------------

    def add(self, device: str, driver: str, password: str | None, now: _dt.datetime
            ) -> Device:
        """Register ``device`` for ``driver`` with ``password`` (kept only as its salted
        hash), or bind a registered one to ``driver``; ``password=None`` keeps its
        credential (a new device needs one)."""
        known = self.get(device)
        if known is not None and known.driver != driver:
            self.bind(device, driver, now)
        if password is None:
            if known is None:
                raise StoreError(f"device {device} is not registered: it needs a password")
        elif known is not None:
            self.rotate(device, password, now)
        else:
            self.conn.execute(
                "INSERT INTO devices(device, driver, password_hash, created_at, state) "
                "VALUES(?,?,?,?, 'active')",
                (device, driver, hash_password(password), now.isoformat()),
            )
        self.conn.execute("INSERT OR IGNORE INTO streams(device) VALUES(?)", (device,))
        found = self.get(device)
        assert found is not None  # just written
        return found

    def _known(self, device: str) -> Device:
        found = self.get(device)
        if found is None:
            raise StoreError(f"device {device} is not registered; see `gateway devices list`")
        return found

    def revoke(self, device: str, now: _dt.datetime) -> Device:
        """The device loses its broker identity and its stream (StoreError if unknown)."""
        self._known(device)
        self.conn.execute("UPDATE devices SET state='revoked', changed_at=? WHERE device=?",
                          (now.isoformat(), device))
        return self._known(device)

    def rotate(self, device: str, password: str, now: _dt.datetime) -> Device:
        """A new credential (only its hash is kept); the old one stops working. A revoked
        device is active again with it."""
        self._known(device)
        self.conn.execute("UPDATE devices SET password_hash=?, state='active', changed_at=? "
                          "WHERE device=?", (hash_password(password), now.isoformat(), device))
        return self._known(device)

    def bind(self, device: str, driver: str, now: _dt.datetime) -> Device:
        """Bind the device to ``driver``. Its events made before now still count for the
        driver it had (``Device.driver_at``): what the tablet had not yet sent is kept."""
        known = self._known(device)
        if known.driver != driver:
            self.conn.execute(
                "UPDATE devices SET previous_driver=driver, driver=?, rebound_at=?, "
                "changed_at=? WHERE device=?",
                (driver, now.isoformat(), now.isoformat(), device))
        return self._known(device)

    def get(self, device: str) -> Device | None:
        row = self.conn.execute(
            f"SELECT {_COLUMNS} FROM devices WHERE device=?",
            (device,)).fetchone()
        return None if row is None else Device(*row)

    def all(self) -> list[Device]:
        return [Device(*r) for r in self.conn.execute(
            f"SELECT {_COLUMNS} FROM devices ORDER BY device")]

    def of_driver(self, driver: str) -> list[Device]:
        """The driver's devices that are not revoked (they are sent the driver's route)."""
        return [Device(*r) for r in self.conn.execute(
            f"SELECT {_COLUMNS} FROM devices WHERE driver=? AND state='active' "
            "ORDER BY device", (driver,))]

    def of_drivers(self, drivers: Iterable[str]) -> dict[str, list[Device]]:
        """``of_driver`` for many drivers in one query (drivers without devices left out;
        revoked devices too)."""
        out: dict[str, list[Device]] = {}
        for row in self.conn.execute(
                f"SELECT {_COLUMNS} FROM devices WHERE state='active' AND driver IN "
                "(SELECT value FROM json_each(?)) ORDER BY device",
                (json.dumps(sorted(set(drivers))),)):
            out.setdefault(row[1], []).append(Device(*row))
        return out

    # --- routes -------------------------------------------------------------------------

    def set_route_members(self, order_id: str, old: Sequence[str], new: Sequence[str]) -> None:
        self.set_routes_members([(order_id, old, new)])

    def set_routes_members(self, changes: Sequence[tuple[str, Sequence[str], Sequence[str]]]
                           ) -> None:
        """``set_route_members`` for many orders in two statements (a first ingest moves every
        order onto a route: two statements per order were 5 % of its merge)."""
        self.conn.executemany("DELETE FROM route_members WHERE driver=? AND order_id=?",
                              [(d, o) for o, old, new in changes for d in old if d not in new])
        self.conn.executemany("INSERT OR IGNORE INTO route_members(driver, order_id) VALUES(?,?)",
                              [(d, o) for o, _old, new in changes for d in new])

    def route(self, driver: str) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT order_id FROM route_members WHERE driver=? ORDER BY order_id", (driver,))]

    def route_rules(self, driver: str) -> dict[str, dict[str, Any]]:
        """The driver's route with each view's rule inputs (``Store.view_rules``), in order id
        order: one query for both. The parsed route is kept on the Store per driver and reused
        where the stored texts are unchanged (a route is re-checked on every change of any of
        its orders, usually one or two of hundreds): callers must not modify it."""
        texts: dict[str, str] = dict(self.conn.execute(
            "SELECT m.order_id, v.rules FROM route_members m JOIN views v USING (order_id) "
            "WHERE m.driver=? ORDER BY m.order_id", (driver,)).fetchall())
        cached = self.store.rules_cache.get(driver)
        if cached is not None and cached[0].keys() == texts.keys():
            old_texts, old_parsed = cached
            moved = texts.items() - old_texts.items()
            if not moved:
                return old_parsed
            parsed = dict(old_parsed)  # same keys: the order id order is kept
            for order_id, text in moved:
                parsed[order_id] = json.loads(text)
        else:
            parsed = {o: json.loads(t) for o, t in texts.items()}
        self.store.rules_cache[driver] = (texts, parsed)
        return parsed

    def route_rules_of(self, driver: str, order_ids: Iterable[str]
                       ) -> dict[str, dict[str, Any] | None]:
        """``route_rules`` for the given orders only, None for those not on the route."""
        ids = sorted(set(order_ids))
        out: dict[str, dict[str, Any] | None] = dict.fromkeys(ids)
        for order_id, text in rows_in(
                self.conn,
                "SELECT m.order_id, v.rules FROM route_members m JOIN views v USING (order_id) "
                "WHERE m.driver=? AND m.order_id IN ({marks})", ids, driver):
            out[order_id] = json.loads(text)
        return out

    def route_warnings(self, driver: str) -> dict[str, str]:
        """The warnings last sent for the driver's orders: order id -> warnings JSON (orders
        without warnings have no row)."""
        return dict(self.conn.execute(
            "SELECT order_id, warnings FROM route_warnings WHERE driver=?", (driver,)).fetchall())

    def route_warnings_of(self, driver: str, order_ids: Iterable[str]) -> dict[str, str]:
        """``route_warnings`` for the given orders only."""
        return dict(rows_in(
            self.conn, "SELECT order_id, warnings FROM route_warnings WHERE driver=? "
            "AND order_id IN ({marks})", order_ids, driver))

    def set_route_warnings(self, driver: str, changed: dict[str, str | None]) -> None:
        """Record the driver's new warnings per order (None: the order has none now)."""
        self.conn.executemany(
            "INSERT INTO route_warnings(driver, order_id, warnings) VALUES(?,?,?) "
            "ON CONFLICT(driver, order_id) DO UPDATE SET warnings=excluded.warnings",
            [(driver, o, w) for o, w in changed.items() if w is not None])
        self.conn.executemany(
            "DELETE FROM route_warnings WHERE driver=? AND order_id=?",
            [(driver, o) for o, w in changed.items() if w is None])

    def drivers_with_routes(self) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT driver FROM route_members ORDER BY driver")]

    def held(self, device: str) -> dict[str, str]:
        """What the device holds, per order: order id -> digest of the body it was last sent."""
        return dict(self.conn.execute(
            "SELECT order_id, digest FROM device_orders WHERE device=?", (device,)).fetchall())

    def sent(self, device: str) -> dict[str, str]:
        """What the device holds, per order: order id -> view JSON, in order id order: the
        stored view with the warnings recorded for the device's route (``_held_bodies``)."""
        return self._held_bodies(device)[0]

    def _held_bodies(self, device: str
                     ) -> tuple[dict[str, str], list[tuple[str, str | None]]]:
        """``sent``, and the orders whose recorded digest is not their body's: (order id, the
        body's digest, or None when the order has no view). After any refresh there are none;
        a device bound to another driver and not synced since has some."""
        found = self.get(device)
        held = self.held(device)
        bodies = self.store.view_bodies(held)
        warned = self.route_warnings_of("" if found is None else found.driver, held)
        out: dict[str, str] = {}
        moved: list[tuple[str, str | None]] = []
        for order_id in sorted(held):
            body = bodies.get(order_id)
            if body is None:
                moved.append((order_id, None))
                continue
            text = warned.get(order_id)
            if text is not None:
                body = body_with_warnings(body, tuple(Warning.model_validate(w)
                                                 for w in json.loads(text)))
            out[order_id] = body
            digest = text_digest(body)
            if digest != held[order_id]:
                moved.append((order_id, digest))
        return out, moved

    # --- streams ------------------------------------------------------------------------

    def append(self, device: str, changes: Iterable[tuple[str, str | None]],
               now: _dt.datetime) -> list[Entry]:
        """Append changes (order id, view JSON or None) that differ from what the device was
        last sent; identical ones produce no entry. Returns the new entries, in seq order."""
        return self.append_many([(device, list(changes))], now).get(device, [])

    def append_many(self, plans: Sequence[tuple[str, Sequence[tuple[str, str | None]]]],
                    now: _dt.datetime) -> dict[str, list[Entry]]:
        """``append`` for many devices (each at most once) in a few statements: device -> its
        new entries (devices without any are left out)."""
        if not plans:
            return {}
        sent = self._sent_pairs([(device, order_id) for device, changes in plans
                                 for order_id, _body in changes])  # digests
        lasts = {d: last for d, (_first, last) in self.bounds_of([d for d, _ in plans]).items()}
        missing = [(device,) for device, _changes in plans if device not in lasts]
        if missing:
            self.conn.executemany("INSERT OR IGNORE INTO streams(device) VALUES(?)", missing)
        out: dict[str, list[Entry]] = {}
        held: list[tuple[str, str, str]] = []  # (device, order id, digest) of the new bodies
        for device, changes in plans:
            last = lasts.get(device, 0)
            entries: list[Entry] = []
            for order_id, body in changes:
                key = (device, order_id)
                digest = None if body is None else text_digest(body)
                if sent.get(key) == digest:
                    continue
                last += 1
                entries.append(Entry(last, order_id, body))
                if digest is None:
                    sent.pop(key, None)
                else:
                    sent[key] = digest
                    held.append((device, order_id, digest))
            if entries:
                out[device] = entries
                lasts[device] = last
        if not out:
            return out
        at = now.isoformat()
        written = [(device, e) for device, entries in out.items() for e in entries]
        self.conn.executemany(
            "INSERT INTO changelog(device, seq, order_id, body, at) VALUES(?,?,?,?,?)",
            [(device, e.seq, e.order_id, e.body, at) for device, e in written],
        )
        self.conn.executemany(
            "INSERT INTO device_orders(device, order_id, digest) VALUES(?,?,?) "
            "ON CONFLICT(device, order_id) DO UPDATE SET digest=excluded.digest",
            held,
        )
        self.conn.executemany(
            "DELETE FROM device_orders WHERE device=? AND order_id=?",
            [(device, e.order_id) for device, e in written if e.body is None],
        )
        self.conn.executemany("UPDATE streams SET last_seq=? WHERE device=?",
                              [(lasts[device], device) for device in out])
        return out

    def _sent_pairs(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The digest of what each (device, order id) pair's device was last sent of that
        order, in one query (a JSON list of the pairs joined on device_orders' key)."""
        if not pairs:
            return {}
        rows = self.conn.execute(
            "SELECT d.device, d.order_id, d.digest FROM json_each(?) j JOIN device_orders d "
            "ON d.device = json_extract(j.value, '$[0]') "
            "AND d.order_id = json_extract(j.value, '$[1]')", (json.dumps(pairs),))
        return {(device, order_id): digest for device, order_id, digest in rows}

    def bounds_of(self, devices: Iterable[str]) -> dict[str, tuple[int, int]]:
        """``bounds`` of many devices in one query; devices without a stream are left out."""
        rows = self.conn.execute(
            "SELECT s.device, s.first_seq, s.last_seq FROM json_each(?) j "
            "JOIN streams s ON s.device = j.value", (json.dumps(sorted(set(devices))),))
        return {device: (int(first), int(last)) for device, first, last in rows}

    def bounds(self, device: str) -> tuple[int, int]:
        """(first, last) seq of the device's changelog; first > last when it is empty."""
        row = self.conn.execute(
            "SELECT first_seq, last_seq FROM streams WHERE device=?", (device,)
        ).fetchone()
        return (1, 0) if row is None else (int(row[0]), int(row[1]))

    def entries(self, device: str, first: int, last: int) -> list[Entry]:
        return [Entry(*r) for r in self.conn.execute(
            "SELECT seq, order_id, body FROM changelog WHERE device=? AND seq BETWEEN ? AND ? "
            "ORDER BY seq", (device, first, last))]

    def snapshot(self, device: str) -> tuple[int, list[str]]:
        """The device's whole route (view JSON bodies, ``sent``) as of its last seq. What the
        device is recorded to hold becomes what the snapshot sends where the two differ (see
        ``_held_bodies``); call it in a transaction."""
        _first, last = self.bounds(device)
        bodies, moved = self._held_bodies(device)
        self.conn.executemany(
            "UPDATE device_orders SET digest=? WHERE device=? AND order_id=?",
            [(digest, device, o) for o, digest in moved if digest is not None])
        self.conn.executemany("DELETE FROM device_orders WHERE device=? AND order_id=?",
                              [(device, o) for o, digest in moved if digest is None])
        return last, list(bodies.values())

    def compact(self, device: str, keep: int) -> int:
        """Drop entries older than the newest ``keep``; later requests behind get a snapshot."""
        first, last = self.bounds(device)
        new_first = max(first, last - keep + 1)
        if new_first <= first:
            return 0
        cur = self.conn.execute("DELETE FROM changelog WHERE device=? AND seq < ?",
                                (device, new_first))
        self.conn.execute("UPDATE streams SET first_seq=? WHERE device=?", (new_first, device))
        return cur.rowcount

    def set_applied(self, device: str, seq: int) -> None:
        self.conn.execute("UPDATE streams SET applied_seq=max(applied_seq, ?) WHERE device=?",
                          (seq, device))

    def positions(self) -> dict[str, tuple[int, int]]:
        """device -> (last seq appended, seq the device reported applied), every stream."""
        rows = self.conn.execute("SELECT device, last_seq, applied_seq FROM streams")
        return {device: (int(last), int(applied)) for device, last, applied in rows}

    def applied(self, device: str) -> int:
        row = self.conn.execute("SELECT applied_seq FROM streams WHERE device=?",
                                (device,)).fetchone()
        return 0 if row is None else int(row[0])

    # --- driver events ------------------------------------------------------------------

    def event_outcome(self, device: str, event_id: str) -> str | None:
        """What became of ``device``'s event ``event_id`` (None: not seen). Event ids are unique
        per device only: another device's event with the same id is another event."""
        row = self.conn.execute("SELECT outcome FROM events WHERE device=? AND event_id=?",
                                (device, event_id)).fetchone()
        return None if row is None else str(row[0])

    def record_event(self, event_id: str, device: str, order_id: str, action: str, body: str,
                     outcome: str, now: _dt.datetime) -> bool:
        """Store a driver event durably; False when the device stored its id before (a
        resend)."""
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO events(event_id, device, order_id, action, received_at, "
            "body, outcome) VALUES(?,?,?,?,?,?,?)",
            (event_id, device, order_id, action, now.isoformat(), body, outcome))
        return bool(cur.rowcount)

    def record_dismissal(self, event_id: str, device: str, dismissal_id: str,
                         now: _dt.datetime) -> None:
        """The driver saw refused ``event_id`` (the first dismissal counts; resends do not)."""
        self.conn.execute(
            "INSERT OR IGNORE INTO dismissals(event_id, device, dismissal_id, at) "
            "VALUES(?,?,?,?)", (event_id, device, dismissal_id, now.isoformat()))

    def app_version(self, device: str) -> str:
        """The ``app_version`` of the device's last status, "" when it never sent one."""
        row = self.conn.execute("SELECT body FROM device_status WHERE device=?",
                                (device,)).fetchone()
        return "" if row is None else str(json.loads(row[0]).get("app_version", ""))

    def refused_events(self) -> list[RefusedEvent]:
        """Every driver event the gateway refused, oldest first, with the driver and kind
        from its ``refused-event`` audit line and, where dismissals are recorded, whether the
        driver dismissed it."""
        audited: dict[str, dict[str, Any]] = {}
        for (detail,) in self.conn.execute(
                "SELECT detail FROM audit WHERE action='refused-event'"):
            data = json.loads(detail)
            audited[str(data.get("event_id"))] = data
        dismissals = self._has_table("dismissals")
        rows = self.conn.execute(
            "SELECT e.event_id, e.device, e.order_id, e.action, e.received_at, e.body, "
            "e.outcome, " + ("d.at" if dismissals else "NULL") + " FROM events e "
            + (_JOIN_DISMISSALS if dismissals else "")
            + "WHERE e.outcome LIKE 'refused:%' ORDER BY e.received_at, e.event_id").fetchall()
        bound = {d.device: d.driver for d in self.all()}
        out = []
        for event_id, device, order_id, action, received_at, body, outcome, dismissed in rows:
            note = audited.get(event_id, {})
            reason = outcome.removeprefix("refused:").strip()
            out.append(RefusedEvent(
                event_id=event_id, device=device,
                driver=str(note.get("driver") or bound.get(device) or ""),
                order_id=order_id, action=action,
                kind=str(note.get("kind") or ("moved_result" if outcome.startswith(
                    MOVED_RESULT_OUTCOME) else "refused")),
                reason=reason, at=_dt.datetime.fromisoformat(
                    str(json.loads(body).get("at") or received_at)).isoformat(),
                received_at=received_at,
                dismissed_at=None if dismissed is None else str(dismissed)))
        return out

    def refused_counts(self) -> dict[str, int]:
        """For ``gateway/status``: refused events, those not dismissed, moved results (from
        the events table alone: no scan of the audit)."""
        dismissals = self._has_table("dismissals")
        total, moved, dismissed = self.conn.execute(
            "SELECT count(*), coalesce(sum(e.outcome LIKE ?), 0), "
            + ("count(d.event_id)" if dismissals else "0") + " FROM events e "
            + (_JOIN_DISMISSALS if dismissals else "")
            + "WHERE e.outcome LIKE 'refused:%'", (MOVED_RESULT_OUTCOME + "%",)).fetchone()
        return {"refused_events": int(total), "refused_open": int(total) - int(dismissed),
                "moved_results": int(moved)}

    def _has_table(self, name: str) -> bool:
        return self.conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                                 (name,)).fetchone() is not None

    def last_event_body(self, order_id: str, action: str) -> str | None:
        row = self.conn.execute(
            "SELECT body FROM events WHERE order_id=? AND action=? AND outcome='applied' "
            "ORDER BY received_at DESC LIMIT 1", (order_id, action)).fetchone()
        return None if row is None else str(row[0])

    def event_count(self, device: str | None = None) -> int:
        if device is None:
            return int(self.conn.execute("SELECT count(*) FROM events").fetchone()[0])
        return int(self.conn.execute("SELECT count(*) FROM events WHERE device=?",
                                     (device,)).fetchone()[0])

    # --- presence and counters ----------------------------------------------------------

    def set_status(self, device: str, online: bool, body: str, now: _dt.datetime) -> None:
        self.conn.execute(
            "INSERT INTO device_status(device, online, at, body) VALUES(?,?,?,?) "
            "ON CONFLICT(device) DO UPDATE SET online=excluded.online, at=excluded.at, "
            "body=excluded.body", (device, int(online), now.isoformat(), body))

    def statuses(self) -> dict[str, dict[str, object]]:
        return {d: {"online": bool(o), "at": a, **json.loads(b)} for d, o, a, b in
                self.conn.execute("SELECT device, online, at, body FROM device_status")}

    def bump(self, name: str, by: int = 1) -> None:
        self.conn.execute(
            "INSERT INTO counters(name, value) VALUES(?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value=value+excluded.value", (name, by))

    def counters(self) -> dict[str, int]:
        return {n: int(v) for n, v in self.conn.execute("SELECT name, value FROM counters")}

    # --- dispatch commands (replies kept: a resent command gets the same answer) ----------

    def reply_of(self, command_id: str) -> str | None:
        row = self.conn.execute("SELECT reply FROM commands WHERE command_id=?",
                                (command_id,)).fetchone()
        return None if row is None else str(row[0])

    def record_command(self, command_id: str, client: str, body: str, reply: str,
                       now: _dt.datetime) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO commands(command_id, client, body, reply, at) "
            "VALUES(?,?,?,?,?)", (command_id, client, body, reply, now.isoformat()))


def body_with_warnings(body: str, warnings: tuple[Warning, ...]) -> str:
    """A stored view's body as a device is sent it: with its route's warnings attached."""
    view = OrderView.model_validate_json(body).model_copy(update={"warnings": warnings})
    return view.model_dump_json(exclude_defaults=True)
