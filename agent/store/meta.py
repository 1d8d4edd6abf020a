"""Meta values beside the stream: the HLC clock, the gateway's status, presence, counters.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import TypeAdapter

from agent.store.base import StoreBase, stored_hlc
from sync.envelope import Status
from sync.hlc import Hlc, tick

_COUNTERS: TypeAdapter[dict[str, int]] = TypeAdapter(dict[str, int])


class MetaTables(StoreBase):
    """meta's ``hlc``, ``gateway_status``, presence, ``last_sync_at`` and ``counters``."""

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
        return stored_hlc(self._db.execute(
            "SELECT value FROM meta WHERE key = 'hlc'").fetchone(), node)

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
