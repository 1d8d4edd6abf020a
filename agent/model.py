"""What the agent hands to its callers: route stops, local actions, outbox items, sync status.

All frozen pydantic models (``extra="forbid"``), so the UI and ``crossdock agent state --json``
get the same shapes. Ages are computed when the model is built, from the clock passed in.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, Field

from sync.envelope import DriverAction, DriverEvent, SourceFreshness
from sync.model import Conflict, Frozen, OrderView, Warning

ChangeKind = Literal["route", "conflicts", "sync"]

ACTION_STATUS: dict[str, str] = {
    "arrive": "arrived",
    "deliver": "delivered",
    "fail": "failed",
    "refuse": "refused",
}
"""The status a driver action shows on the route before the gateway's view reflects it."""


class LocalAction(Frozen):
    """A driver action recorded on the tablet and not yet reflected in the gateway's view.

    ``acked`` turns true when the gateway stored it; the overlay goes away with the next view of
    the order the gateway sends after that.
    """

    event_id: str
    order_id: str
    action: DriverAction
    at: AwareDatetime
    acked: bool = False
    reason: str | None = None
    note: str | None = None


class RouteStop(Frozen):
    """One stop as the screen shows it: the gateway's view with the local actions overlaid.

    ``status_shown`` is what the stop's status line says: "delivered (pending)" while the
    driver's action waits for its ack, "delivered (sent)" once acked, else the view's status
    ("conflict" when sources disagree, None when no source says).
    """

    order_id: str
    view: OrderView
    local: tuple[LocalAction, ...] = ()
    status_shown: str | None = None
    hold: bool = False
    warnings: tuple[Warning, ...] = ()
    conflicts: tuple[Conflict, ...] = ()


class RefusedAction(Frozen):
    """A driver action the gateway stored but turned down, with its reason (``refused_at``: when
    the tablet heard it). Shown until the driver dismisses it; kept (``dismissed_at``, and the
    id of the ``dismiss`` event that told the gateway) after that."""

    event_id: str
    order_id: str
    action: DriverAction
    at: AwareDatetime
    reason: str
    refused_at: AwareDatetime
    dismissed_at: AwareDatetime | None = None
    dismissal_id: str | None = None
    note: str | None = None


class OutboxItem(Frozen):
    """A driver event waiting for the gateway's ack (resent on every reconnect)."""

    event_id: str
    created_at: AwareDatetime
    event: DriverEvent
    attempts: int = 0
    last_sent_at: AwareDatetime | None = None


class SyncStatus(Frozen):
    """How in sync the tablet is, for the status bar and ``agent state``.

    ``online`` is the live session's state in a running agent; in an agent that was not started
    (``agent state``) it is the presence last recorded by the process that runs the session.
    ``sources`` is each source's freshness as last told by the gateway's retained status.
    """

    online: bool
    online_since: AwareDatetime | None = None
    offline_since: AwareDatetime | None = None
    last_sync_at: AwareDatetime | None = None
    last_sync_age_s: float | None = None
    outbox_size: int = 0
    oldest_pending_at: AwareDatetime | None = None
    last_seq: int = 0
    gateway_online: bool | None = None
    gateway_status_at: AwareDatetime | None = None
    sources: tuple[SourceFreshness, ...] = ()
    codec_errors: int = 0
    counters: dict[str, int] = Field(default_factory=dict)


class Change(Frozen):
    """What changed, passed to observers: any of ``route``, ``conflicts``, ``sync``."""

    what: frozenset[ChangeKind]


def age(at: datetime | None, now: datetime) -> float | None:
    """Seconds from ``at`` to ``now`` (never negative), or None when ``at`` is unknown."""
    if at is None:
        return None
    return max(0.0, (now - at).total_seconds())
