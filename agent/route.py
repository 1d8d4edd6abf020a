"""The route a driver sees: the stream's views with the driver's own actions overlaid (pure).

An action the gateway's view does not reflect yet shows as "delivered (pending)" or
"delivered (sent)"; the stops go in the assignment's ``sequence`` order.
"""

from __future__ import annotations

from collections.abc import Iterable

from agent.model import ACTION_STATUS, LocalAction, RouteStop
from sync.model import OrderView


def route_stops(views: Iterable[OrderView], actions: Iterable[LocalAction]) -> list[RouteStop]:
    """The order views with the driver's not-yet-reflected actions overlaid, in route order."""
    by_order: dict[str, list[LocalAction]] = {}
    for action in actions:
        by_order.setdefault(action.order_id, []).append(action)
    stops = [_stop(v, tuple(by_order.get(v.order_id, ()))) for v in views]
    return sorted(stops, key=_route_key)


def _stop(view: OrderView, local: tuple[LocalAction, ...]) -> RouteStop:
    shown: str | None = None
    for action in reversed(local):
        if action.action in ACTION_STATUS:
            shown = f"{ACTION_STATUS[action.action]} ({'sent' if action.acked else 'pending'})"
            break
    if shown is None:
        status = view.fields.get("status")
        if status is not None and status.state == "conflict":
            shown = "conflict"
        elif status is not None and status.state != "withdrawn" and status.value is not None:
            shown = str(status.value)
    return RouteStop(
        order_id=view.order_id,
        view=view,
        local=local,
        status_shown=shown,
        hold=view.hold,
        warnings=view.warnings,
        conflicts=view.conflicts(),
    )


def _route_key(stop: RouteStop) -> tuple[int, str]:
    """Route order: the assignment's ``sequence`` when sources agree on it, then order id."""
    assignment = stop.view.value("assignment")
    sequence = assignment.get("sequence") if isinstance(assignment, dict) else None
    if isinstance(sequence, int) and not isinstance(sequence, bool):
        return sequence, stop.order_id
    return 1 << 30, stop.order_id
