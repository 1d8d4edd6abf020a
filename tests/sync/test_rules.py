"""Rule checks over a driver's route: shift hours, delivery windows, capacity."""

from __future__ import annotations

from datetime import UTC, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from sync.merge import merge
from sync.model import Policy
from sync.rules import check_route, with_warnings
from tests.sync.factories import T0, at, claim

POLICY = Policy()


def _iso(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def route(*stops):
    claims = []
    for i, (order, eta, window, load) in enumerate(stops):
        claims.append(claim(f"{order}-d", "legacy", "7", order_id=order))
        claims.append(claim(f"{order}-s", "legacy", i + 1, order_id=order, field="sequence"))
        if eta is not None:
            claims.append(claim(f"{order}-e", "legacy", _iso(eta), order_id=order, field="eta"))
        if window is not None:
            w = {"start": _iso(window[0]), "end": _iso(window[1])}
            claims.append(claim(f"{order}-w", "legacy", w, order_id=order, field="window"))
        if load is not None:
            claims.append(claim(f"{order}-l", "legacy", load, order_id=order, field="load"))
    return list(merge(claims, [], POLICY, at(1)).views.values())


def test_stop_past_the_shift_cap_is_warned():
    warnings = check_route(route(("A", 0, None, None), ("B", 10 * 60 + 1, None, None)), POLICY)
    assert list(warnings) == ["B"]
    assert warnings["B"][0].code == "shift-hours"
    assert "10.0 h cap" in warnings["B"][0].message


def test_shift_cap_is_configurable():
    short = Policy(shift_cap=timedelta(hours=2))
    warnings = check_route(route(("A", 0, None, None), ("B", 150, None, None)), short)
    assert [w.code for w in warnings["B"]] == ["shift-hours"]


def test_arrival_outside_the_window_is_warned():
    window = (90, 120)
    stops = route(("A", 60, window, None), ("B", 200, window, None), ("C", 100, window, None))
    warnings = check_route(stops, POLICY)
    assert sorted(warnings) == ["A", "B"]
    assert "before the window opens" in warnings["A"][0].message
    assert "after the window closes" in warnings["B"][0].message


def test_capacity_is_checked_only_when_known():
    stops = route(("A", 0, None, 400), ("B", 10, None, 500), ("C", 20, None, 200))
    assert check_route(stops, POLICY) == {}
    warnings = check_route(stops, POLICY, capacity=1000)
    assert list(warnings) == ["C"]
    assert warnings["C"][0].code == "capacity"


def test_contested_values_check_nothing():
    claims = [
        claim("A-e", "legacy", _iso(0), order_id="A", field="eta"),
        claim("B-e", "legacy", _iso(11 * 60), order_id="B", field="eta"),
        claim("B-e2", "dispatch", _iso(60), order_id="B", field="eta", minute=2),
    ]
    views = list(merge(claims, [], POLICY, at(3)).views.values())
    assert check_route(views, POLICY) == {}


def test_warnings_are_attached_to_their_stops():
    stops = route(("A", 0, None, None), ("B", 11 * 60, None, None))
    attached = with_warnings(stops, check_route(stops, POLICY))
    assert [len(v.warnings) for v in attached] == [0, 1]


def test_check_inputs_on_rule_inputs_is_check_route():
    from sync.rules import check_inputs, rule_inputs

    window = (90, 120)
    stops = route(("A", 60, window, 400), ("B", 11 * 60, window, 500), ("C", 100, None, 200))
    inputs = {v.order_id: rule_inputs(v) for v in stops}
    assert set(inputs["A"]) == {"eta", "window", "load", "sequence"}
    for capacity in (None, 1000):
        assert check_inputs(inputs, POLICY, capacity=capacity) == check_route(
            stops, POLICY, capacity=capacity)


# --- incremental checks: RouteCheck.update is check_inputs over the whole new route ---------

_ORDER_IDS = [f"O{i}" for i in range(8)]
_TZ = [UTC, timezone(timedelta(hours=2))]


def _iso_at(minutes: int, tz: int) -> str:
    return (T0 + timedelta(minutes=minutes)).astimezone(_TZ[tz]).isoformat()


_minutes = st.sampled_from([0, 30, 60, 90, 120, 150, 200, 600, 700])
_inputs = st.fixed_dictionaries({}, optional={
    "eta": st.one_of(st.builds(_iso_at, _minutes, st.integers(0, 1)), st.just("soon"),
                     st.just(7)),
    "window": st.builds(lambda a, b: {"start": _iso(a), "end": _iso(b)}, _minutes, _minutes),
    "load": st.one_of(st.sampled_from([0, 1, 2.5, 4]), st.just("heavy")),
    "sequence": st.sampled_from([1, 2, 2, 3, 5]),
})
_route = st.dictionaries(st.sampled_from(_ORDER_IDS), _inputs, max_size=len(_ORDER_IDS))
_changes = st.dictionaries(st.sampled_from(_ORDER_IDS), st.one_of(st.none(), _inputs))
_capacity = st.sampled_from([None, None, 3.0, 6.0])
_policy = st.sampled_from([POLICY, Policy(shift_cap=timedelta(hours=2)),
                           Policy(shift_cap=timedelta(hours=1), service_time=timedelta(
                               minutes=20))])


@settings(max_examples=400, deadline=None)
@given(_route, st.lists(st.tuples(_changes, _capacity), min_size=1, max_size=4), _capacity,
       _policy)
def test_an_incremental_check_is_the_check_of_the_whole_new_route(route, steps, capacity,
                                                                   policy):
    from sync.rules import RouteCheck, check_inputs

    check = RouteCheck.full(route, policy, capacity=capacity)
    assert check.warnings == check_inputs(route, policy, capacity=capacity)
    current = dict(route)
    for changes, cap in steps:
        for order_id, inputs in changes.items():
            if inputs is None:
                current.pop(order_id, None)
            else:
                current[order_id] = inputs
        new, moved = check.update(changes, policy, capacity=cap)
        expected = check_inputs(current, policy, capacity=cap)
        assert new.warnings == expected
        assert dict(new.inputs) == current
        assert moved == {o for o in check.warnings.keys() | expected.keys()
                         if check.warnings.get(o) != expected.get(o)}
        check = new
