"""What dispatch commands and driver events do to the store: claims, resolutions, proposals.

Each function runs inside the caller's transaction and either applies completely or raises
``CommandError`` with the one-line reason sent back (unknown order, unknown driver, no open
conflict, stale proposal...), having changed nothing.

=================  ============================================================================
input              effect
=================  ============================================================================
assign             a ``dispatch`` claim on ``driver`` (no ``based_on``: where legacy differs,
                   both show until a person resolves); ``--override`` adds a resolution that
                   saw every current candidate: an audited override, shown as such
cancel             a ``dispatch`` claim ``status = cancelled``
resolve            a resolution choosing one candidate (by source or claim id) of an open
                   conflict; it covers exactly the candidates on the table now
approve / reject   a pending optimizer proposal becomes claims / is closed; a proposal that
                   expired or was superseded by a newer one for the order is stale
driver event       a ``driver`` claim based on the claim ids the tablet showed; a result
                   (delivered, failed, refused) is queued for write-back to the legacy system;
                   ``resolve`` is a resolution by the driver
=================  ============================================================================
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from typing import Any

from gateway.errors import CommandError
from gateway.store import proposals
from gateway.store.core import Store
from gateway.store.devices import MOVED_RESULT_OUTCOME, DeviceStore
from sync.envelope import (
    ApproveCommand,
    AssignCommand,
    CancelCommand,
    DriverEvent,
    RejectCommand,
    ResolveCommand,
)
from sync.merge import drivers_of, merge_order
from sync.model import Candidate, OrderView, Policy, Resolution

log = logging.getLogger(__name__)

ACTION_STATUS = {"arrive": "arrived", "deliver": "delivered", "fail": "failed",
                 "refuse": "refused"}
RESULTS = ("deliver", "fail", "refuse")


def _merged(store: Store, order_id: str, policy: Policy, now: _dt.datetime) -> OrderView:
    """The order's view, merged now from the stored claims; an unknown order is refused."""
    claims = store.claims_to_merge([order_id]).get(order_id, [])
    if not claims:
        raise CommandError(f"unknown order {order_id}")
    resolutions = store.resolutions_for([order_id]).get(order_id, [])
    return merge_order(order_id, claims, resolutions, policy, now)


def _current(store: Store, order_id: str, policy: Policy, now: _dt.datetime
             ) -> dict[str, list[Candidate]]:
    """Every field's live candidates, merged now from the stored claims."""
    view = _merged(store, order_id, policy, now)
    return {name: list(fv.candidates) for name, fv in view.fields.items()}


def known_driver(store: Store, driver: str) -> bool:
    """A driver is known when a device is bound to them or some source's claim names them."""
    if DeviceStore(store).of_driver(driver) or DeviceStore(store).route(driver):
        return True
    return store.claims_name_driver(driver)


def assign(store: Store, cmd: AssignCommand, *, command_id: str, policy: Policy,
           now: _dt.datetime) -> dict[str, Any]:
    current = _current(store, cmd.order_id, policy, now)
    if not known_driver(store, cmd.driver):
        raise CommandError(f"unknown driver {cmd.driver}")
    set_id = f"dispatch:{command_id}"
    hlc = store.next_hlc(now)
    if not store.add_claim_set(set_id=set_id, source="dispatch", order_id=cmd.order_id,
                               vals={"driver": cmd.driver}, as_of=now, received_at=now, hlc=hlc,
                               source_rev=command_id):
        return {"claim_id": f"{set_id}#driver", "duplicate": True}
    detail: dict[str, Any] = {"claim_id": f"{set_id}#driver"}
    if cmd.override:
        seen = [c.claim_id for c in current.get("driver", [])] + [f"{set_id}#driver"]
        res = Resolution(
            resolution_id=f"override:{command_id}", order_id=cmd.order_id, field="driver",
            chosen_claim_id=f"{set_id}#driver", value=cmd.driver, seen=tuple(seen),
            by=f"dispatch:{cmd.client}", at=now, hlc=store.next_hlc(now), override=True,
            note=_override_note(current.get("driver", [])),
        )
        store.add_resolution(res)
        detail["resolution_id"] = res.resolution_id
    store.audit(now, f"dispatch:{cmd.client}", "assign", order_id=cmd.order_id,
                driver=cmd.driver, override=cmd.override, command_id=command_id)
    return detail


def _override_note(candidates: list[Candidate]) -> str:
    others = [f"{c.source} (as of {c.as_of:%Y-%m-%d %H:%M})" for c in candidates
              if c.source != "dispatch"]
    return "dispatch override of " + ", ".join(others) if others else "dispatch override"


def cancel(store: Store, cmd: CancelCommand, *, command_id: str, policy: Policy,
           now: _dt.datetime) -> dict[str, Any]:
    _current(store, cmd.order_id, policy, now)
    set_id = f"dispatch:{command_id}"
    store.add_claim_set(set_id=set_id, source="dispatch", order_id=cmd.order_id,
                        vals={"status": "cancelled"}, as_of=now, received_at=now,
                        hlc=store.next_hlc(now), source_rev=command_id)
    store.audit(now, f"dispatch:{cmd.client}", "cancel", order_id=cmd.order_id,
                reason=cmd.reason, command_id=command_id)
    return {"claim_id": f"{set_id}#status"}


def _resolution(store: Store, order_id: str, field: str, choose: str, *, by: str, rid: str,
                policy: Policy, now: _dt.datetime) -> Resolution:
    fv = _merged(store, order_id, policy, now).fields.get(field)
    if fv is None or fv.state != "conflict":
        raise CommandError(f"no open conflict on order {order_id} field {field}")
    candidates = list(fv.candidates)
    chosen = [c for c in candidates if choose in (c.source, c.claim_id)]
    if len(chosen) != 1:
        names = ", ".join(f"{c.source} ({c.claim_id})" for c in candidates)
        raise CommandError(f"{choose!r} is not one candidate of order {order_id} {field} "
                           f"(candidates: {names})")
    return Resolution(
        resolution_id=rid, order_id=order_id, field=field, chosen_claim_id=chosen[0].claim_id,
        value=chosen[0].value, seen=tuple(c.claim_id for c in candidates), by=by, at=now,
        hlc=store.next_hlc(now),
    )


def resolve(store: Store, cmd: ResolveCommand, *, command_id: str, policy: Policy,
            now: _dt.datetime) -> dict[str, Any]:
    res = _resolution(store, cmd.order_id, cmd.field, cmd.choose, by=f"dispatch:{cmd.client}",
                      rid=f"resolve:{command_id}", policy=policy, now=now)
    store.add_resolution(res)
    store.audit(now, f"dispatch:{cmd.client}", "resolve", order_id=cmd.order_id,
                field=cmd.field, chose=res.chosen_claim_id, seen=list(res.seen))
    return {"resolution_id": res.resolution_id, "value": res.value}


def _proposal(store: Store, proposal_id: str) -> proposals.Proposal:
    row = proposals.get(store, proposal_id)
    if row is None:
        raise CommandError(f"unknown proposal {proposal_id}")
    return row


def _check_pending(store: Store, row: proposals.Proposal, now: _dt.datetime) -> None:
    proposal_id, state, expires_at = row.proposal_id, row.state, row.expires_at
    if state != "pending":
        raise CommandError(f"stale proposal {proposal_id}: already {state}")
    if expires_at is not None and _dt.datetime.fromisoformat(expires_at) <= now:
        raise CommandError(f"stale proposal {proposal_id}: its approval window ended at "
                           f"{expires_at}")
    newer = proposals.newer_than(store, row)
    if newer is not None:
        raise CommandError(f"stale proposal {proposal_id}: superseded by {newer}")


def approve(store: Store, cmd: ApproveCommand, *, policy: Policy, now: _dt.datetime,
            by: str | None = None) -> dict[str, Any]:
    row = _proposal(store, cmd.proposal_id)
    _check_pending(store, row, now)
    proposal_id, source, order_id, vals, as_of, _created, _exp, _state = row
    values = json.loads(vals)
    gone = values == {"__gone__": True}
    store.add_claim_set(set_id=proposal_id, source=source, order_id=order_id,
                        vals={} if gone else values, as_of=_dt.datetime.fromisoformat(as_of),
                        received_at=now, hlc=store.next_hlc(now), present=not gone,
                        source_rev=proposal_id)
    who = by or f"dispatch:{cmd.client}"
    proposals.decide(store, proposal_id, "approved", by=who, at=now)
    store.audit(now, who, "approve", proposal_id=proposal_id, order_id=order_id)
    return {"order_id": order_id}


def reject(store: Store, cmd: RejectCommand, *, now: _dt.datetime) -> dict[str, Any]:
    row = _proposal(store, cmd.proposal_id)
    _check_pending(store, row, now)
    proposals.decide(store, cmd.proposal_id, "rejected", by=f"dispatch:{cmd.client}", at=now)
    store.audit(now, f"dispatch:{cmd.client}", "reject", proposal_id=cmd.proposal_id)
    return {"order_id": row[2]}


def expire_proposals(store: Store, now: _dt.datetime, *, on_expiry: str) -> int:
    """Pending proposals past their window: rejected, or applied, as the config says."""
    rows = proposals.expired(store, now)
    for proposal_id in rows:
        if on_expiry == "apply":
            row = _proposal(store, proposal_id)
            _p, source, order_id, vals, as_of, _c, _e, _s = row
            store.add_claim_set(set_id=proposal_id, source=source, order_id=order_id,
                                vals=json.loads(vals), as_of=_dt.datetime.fromisoformat(as_of),
                                received_at=now, hlc=store.next_hlc(now), source_rev=proposal_id)
        proposals.decide(store, proposal_id,
                         "applied-at-expiry" if on_expiry == "apply" else "expired",
                         by="window", at=now)
    return len(rows)


MOVED_RESULT = MOVED_RESULT_OUTCOME
"""How a driver's result (delivered, failed, refused) for an order no longer on that driver's
route begins its outcome: kept for dispatch to look at (``kind`` ``moved_result`` in ``gateway
refused``), not as noise."""


def driver_event(store: Store, device: str, driver: str, event: DriverEvent, *,
                 policy: Policy, now: _dt.datetime) -> str:
    """Apply a driver's action from ``device``; returns the outcome stored with the event.

    The event must concern an order on the driver's route; anything else is refused (stored,
    counted, acknowledged so the tablet stops resending, and changes nothing else). A refusal
    is audited (``refused-event``, with the driver and the reason, for the listing and the
    board); a result for an order that moved to another driver is also logged as such.
    """
    outcome = _driver_event(store, device, driver, event, policy=policy, now=now)
    if outcome.startswith("refused:"):
        kind = "moved_result" if outcome.startswith(MOVED_RESULT) else "refused"
        store.audit(now, f"driver:{driver}", "refused-event", event_id=event.event_id,
                    device=device, driver=driver, order_id=event.order_id,
                    event_action=event.action, kind=kind,
                    reason=outcome.removeprefix("refused: "))
        if kind == "moved_result":
            log.warning("driver %s (%s) recorded %s for %s, which moved to another driver: "
                        "kept for dispatch (%s)", driver, device, event.action, event.order_id,
                        outcome.removeprefix(MOVED_RESULT))
    return outcome


def _moved_to(store: Store, order_id: str, driver: str) -> list[str] | None:
    """The drivers an existing order is on now, other than ``driver``; None if it is unknown."""
    view = store.view(order_id)
    return None if view is None else [d for d in drivers_of(view) if d != driver]


def _driver_event(store: Store, device: str, driver: str, event: DriverEvent, *,
                  policy: Policy, now: _dt.datetime) -> str:
    devices = DeviceStore(store)
    if event.order_id not in devices.route(driver):
        now_on = _moved_to(store, event.order_id, driver) if event.action in RESULTS else None
        if now_on is not None:
            where = (f"now on driver {', '.join(now_on)}'s route" if now_on
                     else "now on no driver's route")
            return (f"{MOVED_RESULT}{ACTION_STATUS[event.action]} {event.order_id} by driver "
                    f"{driver}, {where}")
        return f"refused: order {event.order_id} is not on driver {driver}'s route"
    as_of = min(event.at, now)  # a tablet clock ahead of ours does not make news from the future
    # event ids are unique per device only: what is named after one carries the device too
    uid = f"{device}:{event.event_id}"
    set_id = f"driver:{uid}"
    vals: dict[str, Any]
    if event.action in ACTION_STATUS:
        vals = {"status": ACTION_STATUS[event.action]}
    elif event.action == "note":
        vals = {"driver_note": event.note or ""}
    else:  # resolve
        if event.field is None or event.choose is None:
            return "refused: a resolve event needs field and choose"
        try:
            res = _resolution(store, event.order_id, event.field, event.choose,
                              by=f"driver:{driver}@{device}", rid=f"driver:{uid}",
                              policy=policy, now=now)
        except CommandError as exc:
            return f"refused: {exc}"
        store.add_resolution(res)
        store.audit(now, f"driver:{driver}", "resolve", order_id=event.order_id,
                    field=event.field, chose=res.chosen_claim_id)
        return "applied"
    store.add_claim_set(set_id=set_id, source="driver", order_id=event.order_id, vals=vals,
                        as_of=as_of, received_at=now, hlc=store.next_hlc(now),
                        based_on=event.based_on, source_rev=event.event_id)
    if event.action in RESULTS:
        arrived = devices.last_event_body(event.order_id, "arrive")
        store.add_result(uid, event.order_id, {
            "result_id": uid,
            "order_id": event.order_id,
            "result": ACTION_STATUS[event.action],
            "reason": event.reason,
            "arrived_at": json.loads(arrived)["at"] if arrived else None,
            "done_at": event.at.isoformat(),
            "note": event.note,
        }, now)
    return "applied"
