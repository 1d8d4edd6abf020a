"""A burst of changes for one tablet goes out together once the device's interval is up; a
quiet device's change goes out at once. Nothing is lost either way."""

from __future__ import annotations

import time

import pytest

from agent.service import Agent
from tests.system.depot import Depot, last_seq, wait_for

ORDERS = ["A", "B", "C", "D", "E"]


def _cancelled(tab: Agent, order_id: str) -> bool:
    """The tablet shows dispatch's cancellation (against the legacy export's "planned")."""
    view = next(s for s in tab.route() if s.order_id == order_id).view
    status = view.fields.get("status")
    return status is not None and any(
        c.source == "dispatch" and c.value == "cancelled" for c in status.candidates)


def _in_step(depot: Depot, tab: Agent) -> bool:
    return tab.sync_status().last_seq == last_seq(depot, "tab-7")


def test_a_burst_for_one_tablet_goes_out_as_one_message_after_the_interval(
        depot: Depot) -> None:
    depot.export([(o, "7", n + 1, "PLANNED") for n, o in enumerate(ORDERS)])
    tab = depot.add_device("tab-7", "7")
    assert wait_for(lambda: len(tab.route()) == len(ORDERS) and _in_step(depot, tab), 20)
    service = depot.service
    service.coalesce_s = 2.0
    time.sleep(2.1)  # the device's interval is up: its next change goes out at once

    messages, entries = service.stream_messages, service.published_entries
    t0 = time.monotonic()
    assert depot.dispatch(action="cancel", order_id="A").body.ok
    assert wait_for(lambda: _cancelled(tab, "A"), 5)
    first = time.monotonic() - t0
    for order_id in ORDERS[1:]:  # within the interval: held, then sent together
        assert depot.dispatch(action="cancel", order_id=order_id).body.ok
    held = service.call(lambda _store: sum(len(e) for e in service._held.values()))
    assert wait_for(lambda: all(_cancelled(tab, o) for o in ORDERS), 10)
    assert wait_for(lambda: _in_step(depot, tab), 10)

    assert first < 1.5, "a quiet device's change waited for the interval"
    assert held == len(ORDERS) - 1 or (held == 0 and time.monotonic() - t0 > 2.0)
    assert service.published_entries - entries == len(ORDERS)
    assert service.stream_messages - messages == 2, "the burst was not sent as one message"


def test_entries_held_when_the_gateway_dies_reach_the_tablet_when_it_is_back(
        depot: Depot, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.streams.service import GatewayService
    from tests.system.depot import pause_gateway, resume_gateway

    depot.export([(o, "7", n + 1, "PLANNED") for n, o in enumerate(ORDERS)])
    tab = depot.add_device("tab-7", "7", resync_quiet_s=600)  # no quiet resync to help
    assert wait_for(lambda: len(tab.route()) == len(ORDERS) and _in_step(depot, tab), 20)
    depot.service.coalesce_s = 600.0  # from now on the tablet's entries are held
    assert depot.dispatch(action="cancel", order_id="A").body.ok
    assert wait_for(lambda: depot.service.call(lambda _s: bool(depot.service._held)), 10)
    seq = tab.sync_status().last_seq

    real_flush = GatewayService._flush
    monkeypatch.setattr(GatewayService, "_flush", lambda *_a, **_k: None)  # dies holding it
    pause_gateway(depot)
    assert wait_for(lambda: tab.sync_status().gateway_online is False, 10)
    assert tab.sync_status().last_seq == seq  # the tablet never got the cancellation
    monkeypatch.setattr(GatewayService, "_flush", real_flush)
    resume_gateway(depot)  # back online: the tablet asks at once and gets it from the log
    assert wait_for(lambda: _cancelled(tab, "A") and _in_step(depot, tab), 10)


def test_an_ingest_handing_in_batch_after_batch_is_merged_once_it_settles(
        depot: Depot, monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.streams.outflow  # where the service calls refresh()

    depot.export([(o, "7", n + 1, "PLANNED") for n, o in enumerate(ORDERS)])
    tab = depot.add_device("tab-7", "7")
    assert wait_for(lambda: len(tab.route()) == len(ORDERS) and _in_step(depot, tab), 20)
    service = depot.service
    service.ingest_settle_s = 1.0
    refreshes: list[float] = []
    merge = gateway.streams.outflow.refresh

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        refreshes.append(time.monotonic())
        return merge(*args, **kwargs)

    monkeypatch.setattr(gateway.streams.outflow, "refresh", counted)
    t0 = time.monotonic()
    for n, order_id in enumerate(ORDERS[:3]):  # as an ingest job: its own store, then a request
        with depot.store() as store, store.transaction():
            now = depot.clock()
            store.add_claim_set(set_id=f"dispatch:settle:{n}", source="dispatch",
                                order_id=order_id, vals={"status": "cancelled"}, as_of=now,
                                received_at=now, hlc=store.next_hlc(now))
        service.request_refresh("ingest")
    assert wait_for(lambda: all(_cancelled(tab, o) for o in ORDERS[:3]), 10)
    assert len(refreshes) == 1, "the hand-ins were not merged together"
    assert refreshes[0] - t0 >= 0.9
