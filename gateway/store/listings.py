"""Listings the dispatch board and ``crossdock gateway proposals`` read from the gateway store:
optimizer proposals, tablets, the audit log of decisions. (Refused driver actions: the one
listing ``crossdock gateway refused`` uses too, ``EventStore.refused_events``.)

SQL lives here (a store module), so the board's web layer only calls these functions. Each
returns frozen dataclasses or plain dicts ready for JSON.

A proposal's id is the claim set it becomes when approved: ``SOURCE:RUN:ORDER`` (the source's
claim name, the run that read it, the order), e.g. ``optimizer:12:O-1001``; it is what
``crossdock dispatch approve ID`` and ``reject ID`` take.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from gateway.store.core import Store
from gateway.store.devices import DeviceStore
from gateway.store.streams import StreamPosition
from sync.model import OrderView

_IN_CONFLICT = "body LIKE '%\"state\":\"conflict\"%'"
CONFLICT_INDEX = ("CREATE INDEX IF NOT EXISTS views_conflicts ON views(order_id) "
                  f"WHERE {_IN_CONFLICT}")
"""A partial index of the views with an open conflict: the board reads them at every redraw,
and a scan of every view's body took 110 ms at 5,000 stops (0.07 ms with it). Keeping it costs
a view write one LIKE over its body: a refresh of 10,000 changes to 10,000 stops took 3.25-3.62
s CPU with it, 3.33-3.52 s without (three runs each). ``conflict_views`` below uses it; the
query's WHERE must stay the index's, word for word, or SQLite scans again."""


EVENTS_INDEX = "CREATE INDEX IF NOT EXISTS events_device ON events(device, received_at)"
"""Each tablet's last driver event (``tablets``) without a scan of every event ever stored."""


AUDIT_INDEX = "CREATE INDEX IF NOT EXISTS audit_action ON audit(action)"
"""The refused events' audit lines (``EventStore.refused_events``: each one's driver and kind)
without a scan of the whole audit log at every redraw."""


def ensure_indexes(store: Store) -> None:
    """Create the board's indexes on the gateway's tables (once; a scan of each)."""
    store.conn.execute(CONFLICT_INDEX)
    store.conn.execute(EVENTS_INDEX)
    store.conn.execute(AUDIT_INDEX)


def conflict_views(store: Store) -> list[OrderView]:
    """The views with an open conflict, by order id (``Store.conflict_views``, indexed)."""
    rows = store.conn.execute(
        f"SELECT body FROM views WHERE {_IN_CONFLICT} ORDER BY order_id").fetchall()
    return [OrderView.model_validate_json(r[0]) for r in rows]


PROPOSAL_STATES = ("pending", "shadow", "approved", "rejected", "expired", "applied-at-expiry")


@dataclass(frozen=True)
class ProposalRow:
    proposal_id: str
    source: str
    order_id: str
    values: dict[str, Any]
    """The fields the proposal would set; ``{}`` with ``withdraws`` when it drops the order."""
    withdraws: bool
    as_of: str
    created_at: str
    expires_at: str | None
    state: str
    decided_by: str | None
    decided_at: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def proposals(store: Store, *, states: tuple[str, ...] = ("pending",)) -> list[ProposalRow]:
    """Proposals in ``states`` (default: held for approval), oldest window end first."""
    rows = store.conn.execute(
        "SELECT proposal_id, source, order_id, vals, as_of, created_at, expires_at, state, "
        "decided_by, decided_at FROM proposals WHERE state IN (SELECT value FROM json_each(?)) "
        "ORDER BY coalesce(expires_at, created_at), proposal_id", (json.dumps(list(states)),))
    out = []
    for pid, source, order_id, vals, as_of, created, expires, state, by, at in rows:
        values = json.loads(vals)
        gone = values == {"__gone__": True}
        out.append(ProposalRow(pid, source, order_id, {} if gone else values, gone, as_of,
                               created, expires, state, by, at))
    return out


@dataclass(frozen=True)
class Tablet:
    device: str
    driver: str
    online: bool | None
    """None: the tablet never reported."""
    status_at: str | None
    """When its presence last changed (online or offline since)."""
    app_version: str
    head_seq: int
    applied_seq: int
    acked_at: str | None
    """When the tablet last acknowledged its stream (reported the seq it applied); None:
    never (or not since the gateway began recording it)."""
    stops: int
    last_event_at: str | None
    """When the gateway last stored (and so acknowledged) a driver event from this tablet."""

    @property
    def behind(self) -> int:
        return max(0, self.head_seq - self.applied_seq)


def tablets(store: Store) -> list[Tablet]:
    """Every registered tablet: presence, version, stream head, what it applied and when it
    last acknowledged its stream."""
    ds = DeviceStore(store)
    devices = ds.all()
    statuses = ds.statuses()
    positions = ds.stream_positions()
    stops = dict(store.conn.execute(
        "SELECT driver, count(*) FROM route_members GROUP BY driver"))
    acked = {d.device: store.conn.execute(  # events_device: one index probe per tablet
        "SELECT max(received_at) FROM events WHERE device=?", (d.device,)).fetchone()[0]
        for d in devices}
    out = []
    for d in devices:
        status = statuses.get(d.device) or {}
        online = status.get("online")
        position = positions.get(d.device, StreamPosition(1, 0, 0, None))
        out.append(Tablet(
            d.device, d.driver, None if online is None else bool(online),
            str(status["at"]) if "at" in status else None, str(status.get("app_version", "")),
            position.last, position.applied, position.acked_at,
            int(stops.get(d.driver, 0)), acked.get(d.device)))
    return out


DECISIONS = ("resolve", "assign", "cancel", "approve", "reject")


def decisions(store: Store, limit: int = 50) -> list[dict[str, Any]]:
    """The audit log's decisions (resolutions, overrides, assignments, approvals, rejections),
    newest first: who, when, what, and which claims they saw."""
    rows = store.conn.execute(
        "SELECT id, at, actor, action, detail FROM audit WHERE action IN "
        "(SELECT value FROM json_each(?)) ORDER BY id DESC LIMIT ?",
        (json.dumps(list(DECISIONS)), limit))
    return [{"id": i, "at": at, "actor": actor, "action": action, "detail": json.loads(d)}
            for i, at, actor, action, d in rows]


def resolution_seen(store: Store, resolution_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Resolutions by id, as stored (``seen``: the claim ids the person was shown)."""
    if not resolution_ids:
        return {}
    return {rid: json.loads(body) for rid, body in store.conn.execute(
        "SELECT resolution_id, body FROM resolutions WHERE resolution_id IN "
        "(SELECT value FROM json_each(?))", (json.dumps(resolution_ids),))}


def claim_summaries(store: Store, claim_ids: list[str]) -> dict[str, dict[str, Any]]:
    """``claim_id -> {source, value, as_of}`` for claim ids ``SET#field`` (unknown ones left
    out): what the audit log shows of the claims a person saw."""
    wanted: dict[str, list[tuple[str, str]]] = {}
    for cid in claim_ids:
        set_id, _, field = cid.rpartition("#")
        if set_id:
            wanted.setdefault(set_id, []).append((cid, field))
    if not wanted:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for set_id, source, vals, as_of, present in store.conn.execute(
            "SELECT set_id, source, vals, as_of, present FROM claim_sets WHERE set_id IN "
            "(SELECT value FROM json_each(?))", (json.dumps(sorted(wanted)),)):
        values = json.loads(vals)
        for cid, field in wanted[set_id]:
            out[cid] = {"source": source, "value": values.get(field), "as_of": as_of,
                        "present": bool(present) and field in values}
    return out


def data_version(store: Store) -> int:
    """Changes whenever another connection commits to the file (SQLite's ``data_version``):
    the board polls it and redraws only then."""
    return int(store.conn.execute("PRAGMA data_version").fetchone()[0])
