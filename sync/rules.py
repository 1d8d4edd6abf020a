"""Rule checks over a driver's route: pure functions from views to warnings (DESIGN §3).

Fields read (only when settled — agreed or resolved; a contested value checks nothing):

* ``eta``      planned arrival, ISO 8601 with offset
* ``window``   ``{"start": ISO, "end": ISO}`` delivery window
* ``load``     the order's size in the vehicle's capacity unit
* ``sequence`` position on the route (ties and gaps allowed)

Checks: shift hours (from the first planned arrival, ``Policy.shift_cap``, 10 h by default),
delivery window against planned arrival, and vehicle capacity when it is known.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from pydantic import JsonValue

from sync.model import OrderView, Policy, Warning


def _time(value: JsonValue) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _number(value: JsonValue) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _order_key(view: OrderView) -> tuple[float, str, str]:
    seq = _number(view.value("sequence"))
    eta = view.value("eta")
    position = seq if seq is not None else float("inf")
    return (position, eta if isinstance(eta, str) else "", view.order_id)


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f} h"


def check_route(
    route: Sequence[OrderView],
    policy: Policy,
    *,
    capacity: float | None = None,
) -> dict[str, tuple[Warning, ...]]:
    """Warnings per order id for one driver's route (orders without warnings are left out)."""
    found: dict[str, list[Warning]] = {}

    def warn(order_id: str, code: str, message: str, field: str | None) -> None:
        found.setdefault(order_id, []).append(
            Warning.model_validate(
                {"code": code, "order_id": order_id, "message": message, "field": field}
            )
        )

    etas = {v.order_id: _time(v.value("eta")) for v in route}
    planned = [t for t in etas.values() if t is not None]
    if planned:
        start = min(planned)
        for view in route:
            eta = etas[view.order_id]
            if eta is not None and eta + policy.service_time - start > policy.shift_cap:
                worked = _hours(eta + policy.service_time - start)
                warn(
                    view.order_id,
                    "shift-hours",
                    f"planned arrival puts the shift at {worked}, over the "
                    f"{_hours(policy.shift_cap)} cap",
                    "eta",
                )
    for view in route:
        eta = etas[view.order_id]
        window = view.value("window")
        if eta is None or not isinstance(window, dict):
            continue
        start_w, end_w = _time(window.get("start")), _time(window.get("end"))
        if start_w is not None and eta < start_w:
            warn(view.order_id, "window", f"planned arrival {eta:%H:%M} is before the window "
                 f"opens at {start_w:%H:%M}", "window")
        elif end_w is not None and eta > end_w:
            warn(view.order_id, "window", f"planned arrival {eta:%H:%M} is after the window "
                 f"closes at {end_w:%H:%M}", "window")
    if capacity is not None:
        total = 0.0
        for view in sorted(route, key=_order_key):
            load = _number(view.value("load"))
            if load is None:
                continue
            total += load
            if total > capacity:
                warn(view.order_id, "capacity", f"load reaches {total:g} of the vehicle's "
                     f"{capacity:g}", "load")
    return {k: tuple(v) for k, v in found.items()}


def with_warnings(
    route: Sequence[OrderView], warnings: Mapping[str, tuple[Warning, ...]]
) -> list[OrderView]:
    """The route's views with their warnings attached (views are frozen: copies)."""
    return [v.model_copy(update={"warnings": warnings.get(v.order_id, ())}) for v in route]
