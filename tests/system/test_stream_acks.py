"""A tablet's stream acks: the gateway records when each device last reported what it applied
(on the gateway's clock, not the tablet's), ``gateway devices list --json`` and the board's
tablets listing show it with its age, and it moves with the next ack."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from crossdock_cli import cli
from gateway.store import listings
from gateway.store.devices import DeviceStore
from tests.system.depot import Depot, SteppedClock, in_step, last_seq, wait_for
from tests.system.networks import Network

AHEAD = dt.timedelta(hours=3)
"""The gateway's clock runs this far ahead of the tablet's: the ack time is the gateway's."""


@pytest.fixture
def clock() -> SteppedClock:
    clock = SteppedClock()
    clock.advance(seconds=AHEAD.total_seconds())
    return clock


@pytest.fixture
def depot(tmp_path: Path, network: Network, clock: SteppedClock) -> Iterator[Depot]:
    d = Depot(tmp_path / "depot", network=network, clock=clock)
    d.start()
    try:
        yield d
    finally:
        d.stop()


def acked_at(depot: Depot, device: str) -> str | None:
    with depot.store() as store:
        position = DeviceStore(store).stream_positions().get(device)
    return None if position is None else position.acked_at


def devices_json(depot: Depot) -> dict[str, dict[str, Any]]:
    result = CliRunner().invoke(cli, ["gateway", "devices", "list", "--config",
                                      str(depot.root / "gateway.toml"), "--json"])
    assert result.exit_code == 0, result.output
    return {r["device"]: r for r in json.loads(result.stdout)}


def test_the_gateway_records_each_stream_ack_on_its_clock_and_lists_it_with_its_age(
        depot: Depot, clock: SteppedClock) -> None:
    depot.export([("X", "7", 1, "PLANNED"), ("Y", "7", 2, "PLANNED")])
    tab = depot.add_device("tab-7", "7", start=False)
    assert acked_at(depot, "tab-7") is None  # registered, never heard from
    listed = devices_json(depot)["tab-7"]
    assert listed["acked_at"] is None and listed["ack_age_s"] is None

    before = clock()
    tab.start()
    assert tab.wait_online(10)
    assert wait_for(lambda: in_step(depot, tab, "tab-7") and acked_at(depot, "tab-7") is not None
                    and tab.sync_status().last_seq == last_seq(depot, "tab-7"), 30)
    first = dt.datetime.fromisoformat(acked_at(depot, "tab-7") or "")
    assert before <= first <= clock()  # the gateway's clock: three hours ahead of the tablet's
    assert first - dt.datetime.now(dt.UTC) > AHEAD - dt.timedelta(minutes=5)

    clock.advance(minutes=10)
    moved = clock()
    depot.export([("X", "7", 2, "PLANNED"), ("Y", "7", 1, "PLANNED")])  # re-sequenced
    assert wait_for(lambda: (acked_at(depot, "tab-7") or "") >= moved.isoformat(), 30)
    assert wait_for(lambda: in_step(depot, tab, "tab-7"), 30)
    second = dt.datetime.fromisoformat(acked_at(depot, "tab-7") or "")
    assert second >= moved > first

    listed = devices_json(depot)["tab-7"]  # the CLI's own clock (the real one) says how old
    assert listed["acked_at"] == acked_at(depot, "tab-7")
    age = (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(listed["acked_at"]))
    assert abs(listed["ack_age_s"] - age.total_seconds()) < 60  # three hours "ahead": < 0
    with depot.store() as store:
        tablet = {t.device: t for t in listings.tablets(store)}["tab-7"]
    assert tablet.acked_at == listed["acked_at"] and tablet.applied_seq == tablet.head_seq
