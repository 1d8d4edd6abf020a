"""Rule checks over a driver's route: pure functions from views to warnings (DESIGN §3).

Fields read (only when settled — agreed or resolved; a contested value checks nothing):

* ``eta``      planned arrival, ISO 8601 with offset
* ``window``   ``{"start": ISO, "end": ISO}`` delivery window
* ``load``     the order's size in the vehicle's capacity unit
* ``sequence`` position on the route (ties and gaps allowed)

Checks: shift hours (from the first planned arrival, ``Policy.shift_cap``, 10 h by default),
delivery window against planned arrival, and vehicle capacity when it is known.

The checks read nothing but those four settled values, so a caller that keeps them apart from
the full view (``rule_inputs``, e.g. a small column beside a stored view) can check a whole
route with ``check_inputs`` without parsing any view; ``check_route`` is the same check over
parsed views.
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


RULE_FIELDS = ("eta", "window", "load", "sequence")
"""The fields the checks read: all a route check needs to know about a view."""

RuleInputs = Mapping[str, JsonValue]
"""One view's settled rule fields (``rule_inputs``): field -> value, absent when unsettled."""


def rule_inputs(view: OrderView) -> dict[str, JsonValue]:
    """The view's settled values of ``RULE_FIELDS`` (fields without one are left out)."""
    out: dict[str, JsonValue] = {}
    for name in RULE_FIELDS:
        value = view.value(name)
        if value is not None:
            out[name] = value
    return out


def _order_key(item: tuple[str, RuleInputs]) -> tuple[float, str, str]:
    order_id, inputs = item
    seq = _number(inputs.get("sequence"))
    eta = inputs.get("eta")
    position = seq if seq is not None else float("inf")
    return (position, eta if isinstance(eta, str) else "", order_id)


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f} h"


def check_route(
    route: Sequence[OrderView],
    policy: Policy,
    *,
    capacity: float | None = None,
) -> dict[str, tuple[Warning, ...]]:
    """Warnings per order id for one driver's route (orders without warnings are left out)."""
    return check_inputs({v.order_id: rule_inputs(v) for v in route}, policy, capacity=capacity)


def check_inputs(
    route: Mapping[str, RuleInputs],
    policy: Policy,
    *,
    capacity: float | None = None,
) -> dict[str, tuple[Warning, ...]]:
    """``check_route`` over each order's ``rule_inputs`` (order id -> inputs, in route order)."""
    found: dict[str, list[Warning]] = {}

    def warn(order_id: str, code: str, message: str, field: str | None) -> None:
        found.setdefault(order_id, []).append(
            Warning.model_validate(
                {"code": code, "order_id": order_id, "message": message, "field": field}
            )
        )

    etas = {order_id: _time(inputs.get("eta")) for order_id, inputs in route.items()}
    planned = [t for t in etas.values() if t is not None]
    if planned:
        start = min(planned)
        for order_id, eta in etas.items():
            if eta is not None and eta + policy.service_time - start > policy.shift_cap:
                worked = _hours(eta + policy.service_time - start)
                warn(
                    order_id,
                    "shift-hours",
                    f"planned arrival puts the shift at {worked}, over the "
                    f"{_hours(policy.shift_cap)} cap",
                    "eta",
                )
    for order_id, inputs in route.items():
        eta = etas[order_id]
        window = inputs.get("window")
        if eta is None or not isinstance(window, dict):
            continue
        start_w, end_w = _time(window.get("start")), _time(window.get("end"))
        if start_w is not None and eta < start_w:
            warn(order_id, "window", f"planned arrival {eta:%H:%M} is before the window "
                 f"opens at {start_w:%H:%M}", "window")
        elif end_w is not None and eta > end_w:
            warn(order_id, "window", f"planned arrival {eta:%H:%M} is after the window "
                 f"closes at {end_w:%H:%M}", "window")
    if capacity is not None:
        total = 0.0
        for order_id, inputs in sorted(route.items(), key=_order_key):
            load = _number(inputs.get("load"))
            if load is None:
                continue
            total += load
            if total > capacity:
                warn(order_id, "capacity", f"load reaches {total:g} of the vehicle's "
                     f"{capacity:g}", "load")
    return {k: tuple(v) for k, v in found.items()}


def with_warnings(
    route: Sequence[OrderView], warnings: Mapping[str, tuple[Warning, ...]]
) -> list[OrderView]:
    """The route's views with their warnings attached (views are frozen: copies)."""
    return [v.model_copy(update={"warnings": warnings.get(v.order_id, ())}) for v in route]
