"""Every change reaches the tablets promptly, however it was started (issue 11): a scheduled
poll of a source, the ``@escalation`` job, a dispatch command, and a ``crossdock gateway
ingest`` run by hand beside the running gateway. Each path is timed from the change to the
tablet's commit over a real Mosquitto; the figures are printed, and the only assertion is a
bound well under the tablet's 30 s quiet resync (which used to be what delivered them).

Suspicious exports run by hand are held: the tablets keep their routes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.service import Agent
from gateway.broker.process import ManagedBroker
from gateway.ingest.dbf_header import read_header
from gateway.scheduler import ESCALATION_JOB, GatewayScheduler
from tests.system.depot import Depot, SteppedClock, wait_for, write_orders

pytestmark = pytest.mark.broker

BOUND_S = 10.0  # generous; a tablet's quiet resync comes at 30 s


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


@pytest.fixture
def depot(tmp_path: Path, mosquitto: ManagedBroker, clock: SteppedClock) -> Iterator[Depot]:
    d = Depot(tmp_path / "depot", mosquitto.host, mosquitto.port, clock=clock)
    d.service.tick_s = 3600.0  # no periodic merge to hide a change no one handed in
    d.start()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def scheduler(depot: Depot) -> Iterator[GatewayScheduler]:
    sched = GatewayScheduler(depot.cfg, clock=depot.clock,
                             hand_refresh=depot.service.request_refresh,
                             adapters={"legacy": depot._adapter})
    sched.start()
    try:
        yield sched
    finally:
        sched.shutdown()


def _timed(what: str, change: Callable[[], object], arrived: Callable[[], bool]) -> float:
    start = time.monotonic()
    change()
    ok = wait_for(arrived, BOUND_S)
    took = time.monotonic() - start
    print(f"\n{what}: change -> tablet commit {took:.3f} s")
    assert ok, f"{what}: not on the tablet within {BOUND_S} s"
    return took


def _status(tab: Agent, order_id: str) -> object:
    stop = next((s for s in tab.route() if s.order_id == order_id), None)
    return None if stop is None else stop.view.value("status")


def _hold(tab: Agent, order_id: str) -> bool:
    return any(s.order_id == order_id and s.hold for s in tab.route())


def _cli_ingest(depot: Depot) -> int:
    result = CliRunner().invoke(
        __import__("crossdock_cli").cli,
        ["gateway", "ingest", "--config", str(depot.root / "gateway.toml")])
    return result.exit_code


ROUTE = [("X", "7", 1, "PLANNED"), ("Y", "7", 2, "PLANNED"), ("Z", "7", 3, "PLANNED"),
         ("V", "8", 1, "PLANNED")]  # driver 8 is known


def test_each_path_reaches_the_tablet_promptly(
        depot: Depot, scheduler: GatewayScheduler, clock: SteppedClock) -> None:
    depot.export(ROUTE)
    tab = depot.add_device("tab-7", "7")
    assert wait_for(lambda: len(tab.route()) == 3, 20)
    export = depot.root / "export" / "orders.dbf"

    def poll() -> None:
        write_orders(export, [("X", "7", 1, "DLVD"), *ROUTE[1:]])
        scheduler.run_now("legacy")

    _timed("scheduled poll", poll, lambda: _status(tab, "X") == "delivered")

    def command() -> None:
        reply = depot.dispatch(action="assign", order_id="Y", driver="8", override=True)
        assert reply.body.ok, reply.body.reason

    _timed("dispatch command", command, lambda: all(s.order_id != "Y" for s in tab.route()))

    def by_hand() -> None:
        write_orders(export, [("X", "7", 1, "DLVD"), ROUTE[1], ("Z", "7", 3, "DLVD"), ROUTE[3]])
        assert _cli_ingest(depot) == 0

    _timed("hand-run ingest", by_hand, lambda: _status(tab, "Z") == "delivered")

    # a conflict (dispatch cancels what legacy still plans), then its deadline passes
    assert depot.dispatch(action="cancel", order_id="X").body.ok
    assert wait_for(lambda: any(c.field == "status" for s in tab.route() if s.order_id == "X"
                                for c in s.conflicts), 20)

    def deadline() -> None:
        clock.advance(minutes=31)
        scheduler.run_now(ESCALATION_JOB)

    _timed("escalation job", deadline, lambda: _hold(tab, "X"))


def test_held_exports_run_by_hand_leave_the_tablets_routes(depot: Depot) -> None:
    depot.export(ROUTE)
    tab = depot.add_device("tab-7", "7")
    assert wait_for(lambda: len(tab.route()) == 3, 20)
    export = depot.root / "export" / "orders.dbf"
    good = export.read_bytes()
    seq = tab.sync_status().last_seq

    write_orders(export, [])  # a half-finished FoxPro job: no records
    assert _cli_ingest(depot) == 3
    write_orders(export, [*ROUTE, ("W", "7", 4, "PLANNED")])  # header says 1 of 5 records
    data = bytearray(export.read_bytes())
    data[4:8] = (1).to_bytes(4, "little")
    export.write_bytes(bytes(data))
    assert "file holds 5" in read_header(export).problems[0]
    assert _cli_ingest(depot) == 3
    # the gateway's watch (0.25 s) and merge (0.5 s) have had their time several times over
    assert not wait_for(lambda: len(tab.route()) != 3, 2.0)
    assert tab.sync_status().last_seq == seq

    export.write_bytes(good)  # the good export back: read (it clears the hold), nothing changes
    assert _cli_ingest(depot) == 0
    write_orders(export, [*ROUTE, ("W", "7", 4, "PLANNED")])
    assert _cli_ingest(depot) == 0
    assert wait_for(lambda: len(tab.route()) == 4, BOUND_S)
