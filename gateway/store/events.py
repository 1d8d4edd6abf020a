"""Driver events in the gateway store: every event a tablet sent, stored durably with its
outcome (``events``: de-duplicated by device and event id), the drivers' dismissals of refused
ones (``dismissals``), and the one listing of refused events that ``crossdock gateway refused``
and the dispatch board both show (``EventStore.refused_events``).

``EventStore`` holds their SQL, on a Store's connection (and inside its transactions);
``DeviceStore`` (``gateway.store.devices``) offers the same methods.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from typing import Any

from gateway.store.core import Store

MOVED_RESULT_OUTCOME = "refused: result for an order that moved to another driver: "
"""How the outcome of a driver's result for an order no longer on that driver's route begins
(``streams.commands`` writes it; kind ``moved_result``)."""


@dataclass(frozen=True)
class RefusedEvent:
    """A driver event the gateway kept but did not apply (``gateway refused``, the board).

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

_REFUSED = "e.outcome LIKE 'refused:%'"
"""Every outcome but ``applied`` begins so (``streams.commands``, ``streams.service``)."""


class EventStore:
    """SQL for driver events, their dismissals and the refused-events listing."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.conn = store.conn

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

    def refused_events(self, *, newest_first: bool = False, limit: int | None = None
                       ) -> list[RefusedEvent]:
        """Every driver event the gateway refused, oldest first (``newest_first``: newest
        first; ``limit``: at most that many, the newest when both are given), with the driver
        and kind from its ``refused-event`` audit line and, where dismissals are recorded,
        whether the driver dismissed it. ``crossdock gateway refused`` lists them all, the
        board the newest ``limit``."""
        dismissals = self._has_table("dismissals")
        order = "DESC" if newest_first or limit is not None else "ASC"
        rows = self.conn.execute(
            "SELECT e.event_id, e.device, e.order_id, e.action, e.received_at, e.body, "
            "e.outcome, " + ("d.at" if dismissals else "NULL") + " FROM events e "
            + (_JOIN_DISMISSALS if dismissals else "")
            + f"WHERE {_REFUSED} ORDER BY e.received_at {order}, e.event_id {order} "
            "LIMIT ?", (-1 if limit is None else max(0, limit),)).fetchall()
        if limit is not None and not newest_first:
            rows.reverse()
        audited = self._refusal_notes()
        bound = dict(self.conn.execute("SELECT device, driver FROM devices").fetchall())
        out = []
        for event_id, device, order_id, action, received_at, body, outcome, dismissed in rows:
            note = audited.get((device, event_id)) or audited.get((None, event_id), {})
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

    def _refusal_notes(self) -> dict[tuple[str | None, str], dict[str, Any]]:
        """The ``refused-event`` audit lines by (device, event id): event ids are unique per
        device only. A line without a device (an older gateway's) is keyed (None, id)."""
        notes: dict[tuple[str | None, str], dict[str, Any]] = {}
        for (detail,) in self.conn.execute(
                "SELECT detail FROM audit WHERE action='refused-event'"):
            data = json.loads(detail)
            device = data.get("device")
            notes[(None if device is None else str(device), str(data.get("event_id")))] = data
        return notes

    def refused_counts(self) -> dict[str, int]:
        """For ``gateway/status``: refused events, those not dismissed, moved results (from
        the events table alone: no scan of the audit)."""
        dismissals = self._has_table("dismissals")
        total, moved, dismissed = self.conn.execute(
            "SELECT count(*), coalesce(sum(e.outcome LIKE ?), 0), "
            + ("count(d.event_id)" if dismissals else "0") + " FROM events e "
            + (_JOIN_DISMISSALS if dismissals else "")
            + f"WHERE {_REFUSED}", (MOVED_RESULT_OUTCOME + "%",)).fetchone()
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
