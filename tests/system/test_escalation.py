"""A customer cancellation from one source while the other still shows the order active: the
tablet and ``gateway conflicts`` both show it; past the deadline the stop goes on hold."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agent.model import RouteStop
from gateway.cli import gateway as gateway_cli
from sync.model import Conflict
from tests.system.depot import Depot, SteppedClock, last_seq, wait_for
from tests.system.networks import Network


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


@pytest.fixture
def depot(tmp_path: Path, network: Network, clock: SteppedClock) -> Iterator[Depot]:
    d = Depot(tmp_path / "depot", network=network, escalate_after_min=30, clock=clock)
    d.start()
    try:
        yield d
    finally:
        d.stop()


def _status_conflict(stops: list[RouteStop], order_id: str) -> Conflict | None:
    for stop in stops:
        if stop.order_id == order_id:
            return next((c for c in stop.conflicts if c.field == "status"), None)
    return None


def _cli_conflicts(depot: Depot) -> list[dict[str, Any]]:
    result = CliRunner().invoke(
        gateway_cli, ["conflicts", "--config", str(depot.root / "gateway.toml"), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_cancellation_against_active_legacy_shows_everywhere_then_holds_past_deadline(
        depot: Depot, clock: SteppedClock) -> None:
    depot.export([("X", "7", 1, "PLANNED"), ("Y", "7", 2, "PLANNED")])
    tab = depot.add_device("tab-7", "7")
    assert wait_for(lambda: {s.order_id for s in tab.route()} == {"X", "Y"}, 20)

    reply = depot.dispatch(action="cancel", order_id="X")  # the customer called dispatch
    assert reply.body.ok, reply.body.reason

    # the tablet shows the conflict with both candidates, not yet on hold
    assert wait_for(lambda: _status_conflict(tab.route(), "X") is not None, 20)
    stop = next(s for s in tab.route() if s.order_id == "X")
    conflict = _status_conflict(tab.route(), "X")
    assert conflict is not None
    assert {(c.source, c.value) for c in conflict.candidates} == {
        ("legacy", "planned"), ("dispatch", "cancelled")}
    assert not conflict.escalated and not stop.hold
    assert stop.status_shown == "conflict"
    assert not next(s for s in tab.route() if s.order_id == "Y").hold

    # ... and so does `crossdock gateway conflicts --json`, with each side's source and age
    [row] = _cli_conflicts(depot)
    assert (row["order_id"], row["field"], row["escalated"]) == ("X", "status", False)
    assert {(c["source"], c["value"]) for c in row["candidates"]} == {
        ("legacy", "planned"), ("dispatch", "cancelled")}
    assert all(isinstance(c["age_s"], int) for c in row["candidates"])

    # the deadline passes with nobody resolving: the gateway's tick escalates, the stop holds
    clock.advance(minutes=31)
    assert wait_for(lambda: next(s for s in tab.route() if s.order_id == "X").hold, 20)
    stop = next(s for s in tab.route() if s.order_id == "X")
    conflict = _status_conflict(tab.route(), "X")
    assert conflict is not None and conflict.escalated
    assert stop.view.value("status") is None  # never silently cancelled or kept
    assert {(c.source, c.value) for c in conflict.candidates} == {
        ("legacy", "planned"), ("dispatch", "cancelled")}
    assert not next(s for s in tab.route() if s.order_id == "Y").hold  # only the contested stop
    [row] = _cli_conflicts(depot)
    assert row["escalated"] is True

    # an escalated conflict is news once: later ticks append nothing to the stream
    seq = last_seq(depot, "tab-7")
    assert wait_for(lambda: tab.sync_status().last_seq == seq, 20)
    assert not wait_for(lambda: last_seq(depot, "tab-7") != seq, 1.5)


def test_the_deadline_escalates_while_messages_keep_the_gateway_busy(
        depot: Depot, clock: SteppedClock) -> None:
    """The tick that finds passed deadlines is due by time, not only when the gateway's queue
    goes quiet: 200 tablets reporting keep it from ever being quiet for a tick's length."""
    import threading

    from gateway.streams.service import _Message

    depot.export([("X", "7", 1, "PLANNED")])
    tab = depot.add_device("tab-7", "7")
    assert wait_for(lambda: len(tab.route()) == 1, 20)
    assert depot.dispatch(action="cancel", order_id="X").body.ok
    assert wait_for(lambda: _status_conflict(tab.route(), "X") is not None, 20)

    stop = threading.Event()

    def chatter() -> None:  # a message every 50 ms; the tick is 0.2 s
        while not stop.wait(0.05):
            depot.service._queue.put(_Message("test-depot/v1/devices/tab-7/status", b""))

    thread = threading.Thread(target=chatter, daemon=True)
    thread.start()
    try:
        clock.advance(minutes=31)
        assert wait_for(lambda: next(s for s in tab.route() if s.order_id == "X").hold, 10)
    finally:
        stop.set()
        thread.join()
