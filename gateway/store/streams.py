"""Each device's stream in the gateway store: a changelog with a gapless ``seq`` per device,
what each device holds, and how far it has applied its stream.

A stream entry is one order's new view for the device's driver, or its removal.
``device_orders`` remembers the digest of the body each device was last sent per order, so an
identical view produces no entry; the body itself is the order's stored view with the warnings
recorded for the route (``route_warnings``), which is what a snapshot sends once the changelog
has been compacted. (It kept a copy of every body: each change wrote its 1.7 KB view three
times.) ``streams`` holds each device's first and last seq, the last seq it reported applied,
and when it last reported (its last stream ack: an ``applied`` on its outbox).

``StreamStore`` holds their SQL, on a Store's connection (and inside its transactions);
``DeviceStore`` (``gateway.store.devices``) offers the same methods.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.store.core import Store
from gateway.store.routes import RouteStore
from gateway.store.sql import text_digest
from sync.model import OrderView, Warning


@dataclass(frozen=True)
class Entry:
    """One stream entry: ``body`` is the view's JSON, or None when the order left the route."""

    seq: int
    order_id: str
    body: str | None


@dataclass(frozen=True)
class StreamPosition:
    """Where a device's stream stands: ``last`` is the head (the last seq appended),
    ``applied`` the last seq the device reported applied, ``acked_at`` when the gateway last
    received such a report (ISO 8601 with offset; None: never, or before the gateway recorded
    it)."""

    first: int
    last: int
    applied: int
    acked_at: str | None

    @property
    def behind(self) -> int:
        return max(0, self.last - self.applied)


class StreamStore:
    """SQL for device streams: changelog, what each device holds, positions and acks."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.conn = store.conn

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
        bound = self.conn.execute("SELECT driver FROM devices WHERE device=?",
                                  (device,)).fetchone()
        held = self.held(device)
        bodies = self.store.view_bodies(held)
        warned = RouteStore(self.store).route_warnings_of("" if bound is None else bound[0],
                                                          held)
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

    def set_applied(self, device: str, seq: int, now: _dt.datetime) -> None:
        """The device reports it applied its stream up to ``seq`` (its stream ack), at
        ``now``: the applied seq never goes back (a late, redelivered report), the time of
        the last report is always kept (the tablet was heard from)."""
        self.conn.execute("UPDATE streams SET applied_seq=max(applied_seq, ?), acked_at=? "
                          "WHERE device=?", (seq, now.isoformat(), device))

    def positions(self) -> dict[str, tuple[int, int]]:
        """device -> (last seq appended, seq the device reported applied), every stream."""
        rows = self.conn.execute("SELECT device, last_seq, applied_seq FROM streams")
        return {device: (int(last), int(applied)) for device, last, applied in rows}

    def stream_positions(self) -> dict[str, StreamPosition]:
        """device -> where its stream stands, with its last ack, every stream."""
        rows = self.conn.execute(
            "SELECT device, first_seq, last_seq, applied_seq, acked_at FROM streams")
        return {device: StreamPosition(int(first), int(last), int(applied), acked_at)
                for device, first, last, applied, acked_at in rows}

    def applied(self, device: str) -> int:
        row = self.conn.execute("SELECT applied_seq FROM streams WHERE device=?",
                                (device,)).fetchone()
        return 0 if row is None else int(row[0])



def body_with_warnings(body: str, warnings: tuple[Warning, ...]) -> str:
    """A stored view's body as a device is sent it: with its route's warnings attached."""
    view = OrderView.model_validate_json(body).model_copy(update={"warnings": warnings})
    return view.model_dump_json(exclude_defaults=True)
