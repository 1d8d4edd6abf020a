"""The tablet in a real Kivy window (Xvfb), with real touches at widget positions, against a
real agent (a real SQLite file) paired with the real gateway: in memory (the fast suite) and
over a real Mosquitto (``broker``), through the ``network`` fixture as ``tests/system`` runs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.service import Agent
from tests.memnet import MemNetwork
from tests.system.depot import (
    MAPPING as FOUR_COLUMNS,
)
from tests.system.depot import (
    Depot,
    SteppedClock,
    pause_gateway,
    reopen,
    resume_gateway,
    wait_for,
)
from tests.system.networks import MosquittoNetwork, Network
from tests.ui.conftest import Kiosk

pytestmark = [pytest.mark.ui]

ZONE = ZoneInfo("Europe/Berlin")


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


# the depot's export with what a driver's screens show: customers, addresses, windows, ETAs
MAPPING = FOUR_COLUMNS.replace('status = "STATUS"\n', """status = "STATUS"
customer = "CUSTOMER"
address = "ADDRESS"
window_start = "WIN_START"
window_end = "WIN_END"
eta = "ETA"
notes = "NOTES"
""")
COLUMNS = ("ORDER_ID C(12); DRIVER_ID C(8); SEQ N(4,0); STATUS C(12); CUSTOMER C(40); "
           "ADDRESS C(60); WIN_START T; WIN_END T; ETA T; NOTES C(80)")

CUSTOMERS = [
    ("Bäckerei Hoffmann", "Lindenstraße 12, 10969 Berlin", "Ring twice, side door"),
    ("Maplewood Dental", "Oranienstraße 45, 10999 Berlin", "Dock B, closes 12:00"),
    ("Café Kranzler", "Kurfürstendamm 18, 10719 Berlin", ""),
    ("Apotheke am Markt", "Marktplatz 3, 12345 Berlin", "Fragile"),
    ("Kita Sonnenschein", "Gartenweg 7, 10115 Berlin", "Deliver before 09:00"),
]


def rows(driver_of: dict[str, str] | None = None, status_of: dict[str, str] | None = None,
         count: int = 5) -> list[tuple[object, ...]]:
    """Driver 7's route for today: customers, addresses, windows and planned arrivals."""
    today = dt.datetime.now(ZONE).date()
    out: list[tuple[object, ...]] = []
    for i in range(count):
        order_id = f"ORD-{i + 1:03d}"
        customer, address, notes = CUSTOMERS[i % len(CUSTOMERS)]
        start = dt.datetime.combine(today, dt.time(8 + i, 0))
        # the fourth stop is planned after its window closes: the gateway warns
        eta = start + dt.timedelta(minutes=150 if i == 3 else 25)
        out.append((order_id, (driver_of or {}).get(order_id, "7"), i + 1,
                    (status_of or {}).get(order_id, "PLANNED"), customer, address, start,
                    start + dt.timedelta(hours=2), eta, notes))
    return out


@pytest.fixture
def depot(tmp_path: Path, network: Network, clock: SteppedClock) -> Iterator[Depot]:
    d = Depot(tmp_path / "depot", network=network, escalate_after_min=30, clock=clock,
              mapping=MAPPING, columns=COLUMNS)
    d.start()
    try:
        yield d
    finally:
        d.stop()


def _tablet(depot: Depot, kiosk: Kiosk, clock: SteppedClock) -> tuple[Agent, Any]:
    from ui.screens import TabletRoot

    agent = depot.add_device("tab-7", "7", timezone="Europe/Berlin")
    root = TabletRoot(agent, zone=ZONE, clock=clock)
    kiosk.window.add_widget(root)
    kiosk.pump(3)
    return agent, root


@contextmanager
def off_the_network(network: Network, client_id: str) -> Iterator[None]:
    """The tablet loses its signal for the block. In memory only its connection is cut (the
    gateway stays up: ``MemNetwork.cut``); a real Mosquitto cannot cut one client off, so the
    broker stops instead (the tablet sees the same: no broker to reach)."""
    if isinstance(network, MemNetwork):
        network.cut(client_id)
        try:
            yield
        finally:
            network.mend(client_id)
        return
    assert isinstance(network, MosquittoNetwork)
    network.broker.stop()
    try:
        yield
    finally:
        network.broker.start()


def _texts(widget: Any) -> list[str]:
    """Every text on screen under ``widget`` (labels and buttons; the route's visible rows)."""
    out = []
    for w in widget.walk(restrict=True):
        text = getattr(w, "text", None)
        if isinstance(text, str) and text:
            out.append(text)
    return out


def _shown(root: Any, fragment: str) -> bool:
    return any(fragment in t for t in _texts(root))


def _button(root: Any, label: str) -> Any:
    from ui.widgets import Tap

    found = [w for w in root.walk(restrict=True) if isinstance(w, Tap) and w.text == label]
    assert found, f"no button {label!r} on screen: {_texts(root)}"
    return found[0]


def _row_now(root: Any, order_id: str) -> Any | None:
    """The order's row on the route screen, None while the screen has not drawn it (yet)."""
    from ui.screens import StopRowView

    rows = [w for w in root.walk(restrict=True)
            if isinstance(w, StopRowView) and w.order_id == order_id]
    return rows[0] if rows else None


def _row(root: Any, order_id: str) -> Any:
    row = _row_now(root, order_id)
    assert row is not None, f"no row for {order_id} on the route screen"
    return row


def test_tapping_delivered_records_one_outbox_row_pending_then_sent(
        depot: Depot, kiosk: Kiosk, clock: SteppedClock) -> None:
    depot.export(rows())
    tab, root = _tablet(depot, kiosk, clock)
    assert kiosk.until(lambda: len(tab.route()) == 5)
    assert kiosk.until(lambda: _shown(root, "5 stops"))
    assert kiosk.until(lambda: (r := _row_now(root, "ORD-004")) is not None
                       and "window missed" in _texts(r))
    kiosk.shoot(root, "route")

    kiosk.tap(_row(root, "ORD-002"))
    assert root.manager.current == "stop"
    pause_gateway(depot)  # the ack waits until the gateway is back
    kiosk.tap(_button(root, "Delivered"))
    [item] = tab.pending()  # one outbox row, at once
    assert (item.event.action, item.event.order_id) == ("deliver", "ORD-002")
    assert kiosk.until(lambda: any("delivered at" in t and t.endswith("pending")
                                   for t in _texts(root)))
    kiosk.shoot(root, "stop")
    resume_gateway(depot)
    assert kiosk.until(lambda: tab.pending() == [])
    assert kiosk.until(lambda: any("delivered at" in t and t.endswith("sent")
                                   for t in _texts(root)))
    root.show("route")
    assert kiosk.until(lambda: getattr(_row_now(root, "ORD-002"), "status", "") == "delivered")


def _card_texts(root: Any) -> list[str]:
    return _texts(root.conflict_screen)


def test_an_incoming_conflict_shows_on_route_and_conflict_screens_then_holds(
        depot: Depot, kiosk: Kiosk, clock: SteppedClock) -> None:
    depot.export(rows())
    tab, root = _tablet(depot, kiosk, clock)
    assert kiosk.until(lambda: len(tab.route()) == 5)

    reply = depot.dispatch(action="cancel", order_id="ORD-003")  # the customer called dispatch
    assert reply.body.ok, reply.body.reason
    assert kiosk.until(lambda: (r := _row_now(root, "ORD-003")) is not None
                       and "conflict: status" in _texts(r))
    assert _row(root, "ORD-003").status == "sources disagree"
    assert _shown(root, "Conflicts (1)")
    kiosk.shoot(root, "route-conflict")
    kiosk.tap(_button(root, "Conflicts (1)"))
    assert root.manager.current == "conflict"
    texts = _card_texts(root)
    assert "cancelled" in texts and "planned" in texts  # both candidates, in words
    assert "from dispatch" in texts and "from legacy FoxPro export" in texts
    ages = [t for t in texts if t.startswith("as of ")]
    assert len(ages) == 2 and all(t.endswith((" ago", "just now")) for t in ages), ages
    assert any(t.startswith("as of 00:00 · ") and t.endswith(" ago") for t in ages), ages
    assert any(t.startswith("dispatch decides by ") and t.endswith(", then hold") for t in texts)
    kiosk.shoot(root, "conflict")

    # the driver tells dispatch a preference: a driver note (a claim), not a resolution
    kiosk.tap(_button(root, "I prefer this (tell dispatch)"))

    def notes() -> list[str]:
        with depot.store() as store:
            return [row[0] for row in store.conn.execute(
                "SELECT body FROM events WHERE action='note' AND outcome='applied'")]

    assert kiosk.until(lambda: len(notes()) == 1)
    assert "Driver prefers" in notes()[0]
    assert kiosk.until(lambda: tab.pending() == [])
    assert tab.conflicts(), "a preference resolves nothing"

    # nobody decides before the deadline: the gateway escalates, the tablet shows hold
    clock.advance(minutes=31)
    assert kiosk.until(lambda: any("on hold" in t for t in _card_texts(root)))
    root.show("route")
    assert kiosk.until(lambda: getattr(_row_now(root, "ORD-003"), "status", "")
                       == "on hold — confirm with dispatch")
    assert "hold — confirm with dispatch" in _texts(_row(root, "ORD-003"))
    kiosk.tap(_row(root, "ORD-003"))
    assert _shown(root, "On hold — confirm with dispatch before you act")
    kiosk.shoot(root, "hold")


def test_offline_the_sync_bar_says_since_when_and_how_many_actions_wait(
        depot: Depot, kiosk: Kiosk, clock: SteppedClock, network: Network) -> None:
    depot.export(rows())
    tab, root = _tablet(depot, kiosk, clock)
    assert kiosk.until(lambda: len(tab.route()) == 5)
    assert kiosk.until(lambda: root.bar.headline.text == "Up to date")
    with off_the_network(network, "crossdock-tab-7"):
        assert kiosk.until(lambda: root.bar.headline.text.startswith("Working offline since "))
        kiosk.tap(_row(root, "ORD-001"))
        kiosk.tap(_button(root, "Arrived"))
        kiosk.tap(_button(root, "Back to route"))
        kiosk.tap(_row(root, "ORD-002"))
        kiosk.tap(_button(root, "Failed…"))
        assert root.manager.current == "form"
        kiosk.tap(_button(root, vm_fail_reason()))
        root.form_screen.note.text = "gate locked, called twice"
        kiosk.tap(_button(root, "Send"))
        assert len(tab.pending()) == 2
        assert kiosk.until(lambda: root.bar.detail.text.startswith("2 actions waiting"))
        [failed] = [i for i in tab.pending() if i.event.action == "fail"]
        assert (failed.event.reason, failed.event.note) == (vm_fail_reason(),
                                                            "gate locked, called twice")
        root.show("route")
        kiosk.shoot(root, "offline")
    assert kiosk.until(lambda: tab.pending() == [], 30)
    assert kiosk.until(lambda: root.bar.headline.text == "Up to date", 30)


def vm_fail_reason() -> str:
    from ui.viewmodels import FAIL_REASONS

    return FAIL_REASONS[0]


def test_a_refused_action_shows_its_reason_and_stays_until_dismissed(
        depot: Depot, kiosk: Kiosk, clock: SteppedClock) -> None:
    from gateway.store.devices import DeviceStore as Devices

    moved = ("Reason: result for an order that moved to another driver: delivered ORD-001 by "
             "driver 7, now on driver 8's route")
    depot.export(rows())
    tab, root = _tablet(depot, kiosk, clock)
    assert kiosk.until(lambda: len(tab.route()) == 5)
    tab.stop()  # the tablet goes offline for a while: a new agent on the same file, not started
    depot.agents.remove(tab)
    root.close()
    kiosk.window.remove_widget(root)
    offline = reopen(depot, "tab-7", "7", start=False)
    from ui.screens import TabletRoot

    root = TabletRoot(offline, zone=ZONE, clock=clock)
    kiosk.window.add_widget(root)
    kiosk.pump(3)
    kiosk.tap(_row(root, "ORD-001"))
    kiosk.tap(_button(root, "Delivered"))
    [item] = offline.pending()
    # meanwhile legacy moves the order to driver 8
    depot.export(rows(driver_of={"ORD-001": "8"}))
    assert wait_for(lambda: "ORD-001" not in depot.service.call(
        lambda store: Devices(store).route("7")), 20)
    offline.start()
    assert kiosk.until(lambda: offline.refused() != [], 30)
    assert kiosk.until(lambda: _shown(root, moved))
    assert kiosk.until(lambda: _shown(root, "Refused (1)"))
    root.show("route")
    assert kiosk.until(lambda: (r := _row_now(root, "ORD-001")) is not None
                       and "refused by the depot" in _texts(r))
    kiosk.tap(_button(root, "Refused (1)"))
    assert _shown(root, moved)
    kiosk.shoot(root, "refused")
    root.show("route")
    root.show("refused")  # it stays: navigation, refreshes and ages do not drop it
    assert _shown(root, moved)
    kiosk.tap(_button(root, "Dismiss (I have seen this)"))
    assert kiosk.until(lambda: _shown(root, "Nothing refused."))
    assert offline.refused() == []
    [kept] = offline.refused(dismissed=True)
    assert kept.event_id == item.event_id and kept.dismissed_at is not None
    assert kiosk.until(lambda: offline.pending() == [], 20)  # the dismissal was acked
    with depot.store() as store:
        assert store.conn.execute("SELECT count(*) FROM dismissals WHERE event_id=?",
                                  (item.event_id,)).fetchone()[0] == 1
