"""The device side of the gateway store: the registry of tablets (credentials, revoke, rotate,
bind), their presence and app version, the counters ``gateway/status`` reports, and dispatch
commands' stored replies; ``DeviceStore`` also offers, as one handle, the SQL of the modules
the device tables were split into along their seams:

* ``gateway.store.routes`` (``RouteStore``): which orders are on each driver's route, and the
  warnings last sent for them;
* ``gateway.store.streams`` (``StreamStore``, ``Entry``, ``StreamPosition``): each device's
  changelog, what it holds, how far it applied its stream and when it last acknowledged it;
* ``gateway.store.events`` (``EventStore``, ``RefusedEvent``): driver events, dismissals, and
  the one refused-events listing the CLI and the board share.

Tables live in the same SQLite file as the rest of the store (``Store`` creates them; their
definitions are in ``gateway.store.schema``). New code may take the narrower class.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.credentials import hash_password
from gateway.errors import StoreError
from gateway.store.core import Store
from gateway.store.events import MOVED_RESULT_OUTCOME, EventStore, RefusedEvent
from gateway.store.routes import RouteStore
from gateway.store.streams import Entry, StreamPosition, StreamStore, body_with_warnings

__all__ = ["MOVED_RESULT_OUTCOME", "Device", "DeviceStore", "Entry", "RefusedEvent",
           "StreamPosition", "body_with_warnings"]

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


class DeviceStore(RouteStore, StreamStore, EventStore):
    """SQL for devices, on a Store's connection (and inside its transactions), with routes,
    streams and driver events (the base classes) on the same handle."""

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

    # --- presence and counters ----------------------------------------------------------

    def app_version(self, device: str) -> str:
        """The ``app_version`` of the device's last status, "" when it never sent one."""
        row = self.conn.execute("SELECT body FROM device_status WHERE device=?",
                                (device,)).fetchone()
        return "" if row is None else str(json.loads(row[0]).get("app_version", ""))

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
