"""The field story end to end: real FoxPro export, real gateway, real Mosquitto, real agents."""

from __future__ import annotations

from gateway.writeback.flush import flush_writeback
from tests.system.depot import Depot, wait_for


def _driver_conflict(agent, order_id):
    for stop in agent.route():
        if stop.order_id == order_id:
            for conflict in stop.conflicts:
                if conflict.field == "driver":
                    return conflict
    return None


def _stop(agent, order_id):
    return next((s for s in agent.route() if s.order_id == order_id), None)


def test_legacy_vs_dispatch_conflict_shows_on_both_tablets_until_resolved(depot: Depot):
    depot.export([("X", "7", 1, "PLANNED"), ("Y", "12", 1, "PLANNED")])
    tab7 = depot.add_device("tab-7", "7")
    tab12 = depot.add_device("tab-12", "12")
    assert wait_for(lambda: _stop(tab7, "X") is not None)
    assert wait_for(lambda: _stop(tab12, "Y") is not None)
    assert _stop(tab12, "X") is None

    reply = depot.dispatch(action="assign", order_id="X", driver="12")
    assert reply.body.ok, reply.body.reason

    # both tablets show the conflict: each side, its source, its age
    assert wait_for(lambda: _driver_conflict(tab7, "X") is not None)
    assert wait_for(lambda: _driver_conflict(tab12, "X") is not None)
    for tab in (tab7, tab12):
        conflict = _driver_conflict(tab, "X")
        sides = {(c.source, c.value) for c in conflict.candidates}
        assert sides == {("legacy", "7"), ("dispatch", "12")}
        legacy = next(c for c in conflict.candidates if c.source == "legacy")
        assert legacy.as_of.hour == 0 and legacy.as_of.minute == 0  # nightly export: as of 00:00

    reply = depot.dispatch(action="resolve", order_id="X", field="driver", choose="dispatch")
    assert reply.body.ok, reply.body.reason
    # converge: X leaves driver 7's route and stays on driver 12's, settled
    assert wait_for(lambda: _stop(tab7, "X") is None)
    assert wait_for(lambda: (s := _stop(tab12, "X")) is not None and not s.conflicts)
    assert _stop(tab12, "X").view.value("driver") == "12"

    # driver 12 delivers; the result is written back where the legacy system imports it
    event_id = tab12.act("deliver", "X")
    assert tab12.wait_acked(event_id, 10)
    with depot.store() as store:
        summary = flush_writeback(store, depot.cfg, depot.clock())
    assert summary.written == 1
    # ... and the next export carries the written-back value: no new conflict, nothing new
    depot.export([("X", "12", 1, "DELIVERED"), ("Y", "12", 1, "PLANNED")])
    assert wait_for(lambda: (s := _stop(tab12, "X")) is not None
                    and s.view.value("status") == "delivered")
    with depot.store() as store:
        assert store.conflict_views() == []


def test_refused_dispatch_command_says_why_and_changes_nothing(depot: Depot):
    depot.export([("X", "7", 1, "PLANNED")])
    reply = depot.dispatch(action="assign", order_id="NOPE", driver="7")
    assert not reply.body.ok
    assert reply.body.reason == "unknown order NOPE"
    reply = depot.dispatch(action="assign", order_id="X", driver="99")
    assert reply.body.reason == "unknown driver 99"
    reply = depot.dispatch(action="resolve", order_id="X", field="driver", choose="legacy")
    assert reply.body.reason == "no open conflict on order X field driver"
    with depot.store() as store:
        assert store.conflict_views() == []
