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
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import JsonValue

from sync.model import OrderView, Policy, Warning


def aware_time(value: JsonValue) -> datetime | None:
    """A view's ISO 8601 value as an aware datetime; None if it is not one."""
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
    return dict(RouteCheck.full(route, policy, capacity=capacity).warnings)


def _warning(order_id: str, code: str, message: str, field: str | None) -> Warning:
    return Warning.model_validate(
        {"code": code, "order_id": order_id, "message": message, "field": field})


def _stop_warnings(order_id: str, inputs: RuleInputs, eta: datetime | None,
                   start: datetime | None, policy: Policy) -> list[Warning]:
    """One stop's shift-hours and window warnings (``start``: the route's first arrival)."""
    out: list[Warning] = []
    if eta is None:
        return out
    if start is not None and eta + policy.service_time - start > policy.shift_cap:
        worked = _hours(eta + policy.service_time - start)
        out.append(_warning(order_id, "shift-hours", f"planned arrival puts the shift at "
                            f"{worked}, over the {_hours(policy.shift_cap)} cap", "eta"))
    window = inputs.get("window")
    if not isinstance(window, dict):
        return out
    start_w, end_w = aware_time(window.get("start")), aware_time(window.get("end"))
    if start_w is not None and eta < start_w:
        out.append(_warning(order_id, "window", f"planned arrival {eta:%H:%M} is before the "
                            f"window opens at {start_w:%H:%M}", "window"))
    elif end_w is not None and eta > end_w:
        out.append(_warning(order_id, "window", f"planned arrival {eta:%H:%M} is after the "
                            f"window closes at {end_w:%H:%M}", "window"))
    return out


def _capacity_warnings(route: Mapping[str, RuleInputs], capacity: float
                       ) -> dict[str, Warning]:
    """The capacity warning per order: cumulative load in sequence order over ``capacity``."""
    out: dict[str, Warning] = {}
    total = 0.0
    for order_id, inputs in sorted(route.items(), key=_order_key):
        load = _number(inputs.get("load"))
        if load is None:
            continue
        total += load
        if total > capacity:
            out[order_id] = _warning(order_id, "capacity", f"load reaches {total:g} of the "
                                     f"vehicle's {capacity:g}", "load")
    return out


def _load_key(inputs: RuleInputs | None) -> tuple[tuple[float, str, str], float | None] | None:
    """What a stop contributes to the capacity check of the others (None: not on the route)."""
    if inputs is None:
        return None
    return _order_key(("", inputs)), _number(inputs.get("load"))


@dataclass(frozen=True)
class RouteCheck:
    """One route's rule check: its inputs, their warnings, and the route-level aggregates a
    stop's warnings depend on besides its own inputs (the first planned arrival; the capacity
    the cumulative loads were checked against). ``update`` re-checks only what a change can
    move. Treat the mappings as read-only."""

    inputs: Mapping[str, RuleInputs]
    """order id -> rule inputs, in route order"""
    warnings: Mapping[str, tuple[Warning, ...]]
    """order id -> warnings (orders without warnings are left out), as ``check_inputs``"""
    start: datetime | None
    """the route's first planned arrival (shift start); None when no stop has one"""
    capacity: float | None

    @classmethod
    def full(cls, route: Mapping[str, RuleInputs], policy: Policy, *,
             capacity: float | None = None) -> RouteCheck:
        """Check the whole route."""
        etas = {order_id: aware_time(inputs.get("eta")) for order_id, inputs in route.items()}
        planned = [t for t in etas.values() if t is not None]
        start = min(planned) if planned else None
        loads = {} if capacity is None else _capacity_warnings(route, capacity)
        found: dict[str, tuple[Warning, ...]] = {}
        for order_id, inputs in route.items():
            out = _stop_warnings(order_id, inputs, etas[order_id], start, policy)
            if order_id in loads:
                out.append(loads[order_id])
            if out:
                found[order_id] = tuple(out)
        return cls(dict(route), found, start, capacity)

    def update(self, changes: Mapping[str, RuleInputs | None], policy: Policy, *,
               capacity: float | None = None) -> tuple[RouteCheck, set[str]]:
        """The check of this route with ``changes`` applied (order id -> its new inputs, None:
        it left the route; an order not on the route joins it, at the end), and the orders
        whose warnings differ from this check's (those that left with warnings included).

        Equal to ``full`` over the new route. Only the changed stops are re-checked when no
        change moves the first planned arrival and, when capacity is checked (with the same
        capacity), none changes a load or a position in sequence order (or joins or leaves
        the route); otherwise the whole route is."""
        route = dict(self.inputs)
        for order_id, inputs in changes.items():
            if inputs is None:
                route.pop(order_id, None)
            else:
                route[order_id] = inputs
        if not self._local(changes, capacity):
            new = RouteCheck.full(route, policy, capacity=capacity)
            keys = self.warnings.keys() | new.warnings.keys()
            return new, {o for o in keys if self.warnings.get(o) != new.warnings.get(o)}
        found = dict(self.warnings)
        moved: set[str] = set()
        for order_id, inputs in changes.items():
            before = found.pop(order_id, None)
            after: tuple[Warning, ...] | None = None
            if inputs is not None:
                out = _stop_warnings(order_id, inputs, aware_time(inputs.get("eta")), self.start,
                                     policy)
                out += [w for w in before or () if w.code == "capacity"]  # loads unmoved
                if out:
                    after = found[order_id] = tuple(out)
            if before != after:
                moved.add(order_id)
        return RouteCheck(route, found, self.start, capacity), moved

    def _local(self, changes: Mapping[str, RuleInputs | None], capacity: float | None
               ) -> bool:
        """Whether no change can move another stop's warnings (see ``update``)."""
        if capacity != self.capacity:
            return False
        start = self.start
        for order_id, inputs in changes.items():
            old = self.inputs.get(order_id)
            if capacity is not None and _load_key(old) != _load_key(inputs):
                return False
            new_eta = None if inputs is None else aware_time(inputs.get("eta"))
            if new_eta is not None and (start is None or new_eta < start):
                return False  # an earlier first arrival
            old_eta = None if old is None else aware_time(old.get("eta"))
            if old_eta is not None and old_eta == start and new_eta != start:
                return False  # maybe the only stop at the first arrival: it may move later
        return True


def with_warnings(
    route: Sequence[OrderView], warnings: Mapping[str, tuple[Warning, ...]]
) -> list[OrderView]:
    """The route's views with their warnings attached (views are frozen: copies)."""
    return [v.model_copy(update={"warnings": warnings.get(v.order_id, ())}) for v in route]
