"""A driver's tap as the event the gateway gets: checked against the order's view (pure).

``based_on`` is the claim ids of the order's current candidates (for ``resolve``: of the
field's), i.e. what the driver saw when tapping; ``choose`` for ``resolve`` is a candidate's
claim id or source name. ``Agent.act`` and ``Agent.dismiss`` record and send what this builds.
"""

from __future__ import annotations

from datetime import datetime
from typing import get_args

from pydantic import BaseModel, ConfigDict, ValidationError

from agent.errors import ActionError
from sync.envelope import DriverAction, DriverEvent, DriverEventMsg
from sync.hlc import Hlc
from sync.model import OrderView

ACTIONS: tuple[str, ...] = get_args(DriverAction)


class DriverEventFields(BaseModel):
    """A driver event's fields as the caller gives them, before ``DriverEvent`` checks them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str
    order_id: str
    action: str
    at: datetime
    reason: str | None = None
    note: str | None = None
    based_on: tuple[str, ...] = ()
    field: str | None = None
    choose: str | None = None
    dismisses: str | None = None


def check_action(action: str) -> None:
    """``act`` takes every driver action but ``dismiss`` (``Agent.dismiss`` sends that one)."""
    if action not in ACTIONS:
        raise ActionError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
    if action == "dismiss":
        raise ActionError("a refused action is dismissed with dismiss(event_id), not act()")


def event_message(fields: DriverEventFields, *, device: str, stamp: Hlc) -> DriverEventMsg:
    """The envelope of a driver event; a field the protocol refuses is one ``ActionError``
    line naming the order, the action and the field."""
    try:
        event = DriverEvent(**fields.model_dump(exclude_none=True))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ActionError(
            f"order {fields.order_id}: {fields.action}: {where}: {err['msg']}") from None
    return DriverEventMsg(v=1, kind="driver_event", id=fields.event_id, origin=device,
                          hlc=str(stamp), body=event)


def based_on_of(
    view: OrderView, action: str, field: str | None, choose: str | None
) -> tuple[tuple[str, ...], str | None]:
    """The claim ids the driver saw, and (for ``resolve``) the chosen claim id."""
    if action != "resolve":
        if field is not None or choose is not None:
            raise ActionError(f"order {view.order_id}: field and choose are only for resolve")
        ids = [c.claim_id for name in sorted(view.fields) for c in view.fields[name].candidates]
        return tuple(dict.fromkeys(ids)), None
    if field is None or choose is None:
        raise ActionError(f"order {view.order_id}: resolve needs a field and a choice")
    fv = view.fields.get(field)
    if fv is None or fv.state != "conflict":
        raise ActionError(f"order {view.order_id}: field {field} is not in conflict")
    for candidate in fv.candidates:
        if choose in (candidate.claim_id, candidate.source):
            return tuple(c.claim_id for c in fv.candidates), candidate.claim_id
    sides = ", ".join(f"{c.source} ({c.claim_id})" for c in fv.candidates)
    raise ActionError(f"order {view.order_id}: {field}: choose one of {sides}")
