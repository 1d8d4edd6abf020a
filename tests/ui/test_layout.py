"""Every tappable widget on every screen, in both orientations, measured in millimetres; and
a 500-entry stream burst redrawn a handful of times, not 500. A real Kivy window (Xvfb) over a
real agent on a real SQLite file, fed through the agent's session interface (no broker); the
burst also through the broker (the ``network`` fixture: in memory and a real Mosquitto)."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import pytest

from agent.config import AgentConfig
from agent.service import Agent
from agent.session import Incoming
from sync.codec import encode
from sync.envelope import (
    Ack,
    AckMsg,
    Envelope,
    Refusal,
    ViewChange,
    ViewChangeMsg,
    ViewChanges,
    ViewChangesMsg,
)
from sync.merge import merge_order
from sync.model import Claim, OrderView, Policy
from sync.topics import Topics
from tests.system.networks import Network
from tests.ui.conftest import LANDSCAPE, PORTRAIT, Kiosk

pytestmark = pytest.mark.ui

ZONE = ZoneInfo("Europe/Berlin")
MIDNIGHT = datetime.combine(datetime.now(ZONE).date(), datetime.min.time(), ZONE)
HLC = "001795777200000-000000-gateway"


def _view(i: int, *, conflict: bool = False, status: str = "planned") -> OrderView:
    order_id = f"ORD-{i:03d}"
    now = datetime.now(UTC)  # when the claims are made: the test's own time
    start = MIDNIGHT + timedelta(hours=7, minutes=4 * i)
    values: dict[str, Any] = {
        "status": status, "sequence": i, "customer": f"Customer {i}",
        "address": f"Hauptstraße {i}, 10115 Berlin", "notes": "Dock B" if i % 3 else "",
        "window": {"start": start.isoformat(), "end": (start + timedelta(hours=2)).isoformat()},
        "eta": (start + timedelta(minutes=20)).isoformat(),
    }
    claims = [Claim(claim_id=f"legacy:{order_id}#{f}", order_id=order_id, field=f, value=v,
                    source="legacy", as_of=MIDNIGHT, received_at=MIDNIGHT, hlc=HLC)
              for f, v in values.items()]
    if conflict:
        claims.append(Claim(claim_id=f"dispatch:{order_id}#status", order_id=order_id,
                            field="status", value="cancelled", source="dispatch",
                            as_of=now - timedelta(minutes=3), received_at=now, hlc=HLC))
    return merge_order(order_id, claims, [], Policy(), now)


def _agent(tmp_path: Path) -> Agent:
    config = AgentConfig.model_validate({
        "depot": "test-depot", "device": "tab-7", "driver": "7",
        "db": str(tmp_path / "tab-7.sqlite"), "broker": {"host": "127.0.0.1", "port": 1},
        "timezone": "Europe/Berlin"})
    return Agent(config)


def _batch(first: int, views: list[OrderView]) -> Incoming:
    topic = Topics("test-depot").inbox("tab-7")
    entries = tuple(ViewChange(seq=first + i, order_id=v.order_id, view=v)
                    for i, v in enumerate(views))
    return Incoming(topic, ViewChangesMsg(v=1, kind="view_changes", id=f"b{first}",
                                          origin="gateway", hlc=HLC,
                                          body=ViewChanges(entries=entries)))


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    tab = _agent(tmp_path)
    try:
        yield tab
    finally:
        tab.stop()


def _route(agent: Agent, stops: int = 150) -> None:
    views = [_view(i, conflict=(i == 3)) for i in range(1, stops + 1)]
    for first in range(0, len(views), 100):
        agent.session_message(_batch(first + 1, views[first:first + 100]))


def _refuse_one(agent: Agent, order_id: str) -> None:
    event_id = agent.act("deliver", order_id)
    ack = AckMsg(v=1, kind="ack", id="a1", origin="gateway", hlc=HLC, body=Ack(refused=(
        Refusal(event_id=event_id, reason=f"order {order_id} is not on driver 7's route"),)))
    agent.session_message(Incoming(Topics("test-depot").acks("tab-7"), ack))


def _targets(root: Any) -> list[Any]:
    from kivy.uix.textinput import TextInput

    from ui.screens import StopRowView
    from ui.widgets import Tap

    return [w for w in root.walk(restrict=True)
            if isinstance(w, Tap | StopRowView | TextInput) and w.opacity > 0
            and w.width > 0 and w.height > 0]


def _rect_mm(widget: Any) -> tuple[float, float, float, float]:
    """The widget's rectangle on screen (x, y, width, height) in mm."""
    from kivy.metrics import Metrics

    px_per_mm = Metrics.dpi / 25.4
    x, y = widget.to_window(widget.x, widget.y)
    return (x / px_per_mm, y / px_per_mm, widget.width / px_per_mm, widget.height / px_per_mm)


def _visible_mm(widget: Any) -> tuple[float, float, float, float] | None:
    """The part of the widget a finger can reach: clipped by every scrolling view it is in
    (a recycled row half scrolled out of the list is not under the navigation bar)."""
    from kivy.uix.scrollview import ScrollView

    x, y, w, h = _rect_mm(widget)
    x2, y2 = x + w, y + h
    parent = widget.parent
    while parent is not None and parent is not parent.parent:
        if isinstance(parent, ScrollView):
            px, py, pw, ph = _rect_mm(parent)
            x, y, x2, y2 = max(x, px), max(y, py), min(x2, px + pw), min(y2, py + ph)
        parent = parent.parent
    if x2 <= x or y2 <= y:
        return None
    return x, y, x2 - x, y2 - y


def _measure(root: Any, screen: str) -> dict[str, Any]:
    """Each target's size against its class (primary 15 mm, secondary 10 mm), and the
    smallest gap between two targets (2 mm)."""
    from ui import theme

    targets = [w for w in _targets(root) if _visible_mm(w) is not None]
    assert targets, f"{screen}: no tappable widget found"
    failures = []
    smallest: dict[str, float] = {}
    for w in targets:
        _, _, width, height = _rect_mm(w)
        kind = getattr(w, "target", "secondary")
        need = theme.PRIMARY_MIN_MM if kind == "primary" else theme.SECONDARY_MIN_MM
        side = min(width, height)
        smallest[kind] = min(smallest.get(kind, side), side)
        if side < need:
            failures.append(f"{screen}: {kind} {getattr(w, 'text', '') or w} is "
                            f"{width:.1f} x {height:.1f} mm (needs {need} mm)")
    gap = float("inf")
    for a, b in itertools.combinations(targets, 2):
        ax, ay, aw, ah = _visible_mm(a) or (0.0, 0.0, 0.0, 0.0)
        bx, by, bw, bh = _visible_mm(b) or (0.0, 0.0, 0.0, 0.0)
        dx = max(bx - (ax + aw), ax - (bx + bw))
        dy = max(by - (ay + ah), ay - (by + bh))
        between = max(dx, dy)
        gap = min(gap, between)
        if between < theme.GAP_MIN_MM:
            failures.append(f"{screen}: {getattr(a, 'text', a)!r} and {getattr(b, 'text', b)!r}"
                            f" are {between:.1f} mm apart (needs {theme.GAP_MIN_MM} mm)")
    assert not failures, "\n".join(failures)
    return {"targets": len(targets), **{f"min_{k}_mm": round(v, 1) for k, v in
                                       sorted(smallest.items())},
            "min_gap_mm": round(gap, 1)}


def test_every_tappable_widget_on_every_screen_is_glove_sized(
        agent: Agent, kiosk: Kiosk) -> None:
    from ui.screens import TabletRoot

    _route(agent)
    _refuse_one(agent, "ORD-150")
    agent.act("deliver", "ORD-002")  # pending
    root = TabletRoot(agent, zone=ZONE)
    kiosk.window.add_widget(root)
    figures: dict[str, Any] = {}
    screens = {
        "route": lambda: root.show("route"),
        "stop": lambda: root.open_stop("ORD-003"),
        "conflict": lambda: root.open_conflicts(None),
        "refused": lambda: root.show("refused"),
        "form-failed": lambda: root.open_form("fail", "ORD-004"),
        "form-note": lambda: root.open_form("note", "ORD-004"),
    }
    for orientation, size in (("landscape", LANDSCAPE), ("portrait", PORTRAIT)):
        kiosk.resize(size)
        for name, open_screen in screens.items():
            open_screen()
            kiosk.pump(4)
            figures[f"{name} {orientation}"] = _measure(root, f"{name} ({orientation})")
    # 150 stops in a recycling list: a few row widgets, whatever the route's length
    from ui.screens import StopRowView

    root.show("route")
    kiosk.pump(4)
    rows = [w for w in root.walk(restrict=True) if isinstance(w, StopRowView)]
    assert len(root.route_screen.list.data) == 150 and len(rows) < 20
    root.route_screen.list.scroll_y = 0  # to the end of the route
    assert kiosk.until(lambda: any(w.order_id == "ORD-150" for w in root.walk(restrict=True)
                                   if isinstance(w, StopRowView)))
    root.route_screen.list.scroll_y = 1
    kiosk.pump(4)
    kiosk.shoot(root, "route-150")
    (kiosk.shots / "touch-targets.json").write_text(json.dumps(figures, indent=1) + "\n",
                                                    encoding="utf-8")
    print(json.dumps(figures, indent=1))
    assert figures["route landscape"]["targets"] > 3  # the recycled rows and the navigation


def test_ages_keep_moving_with_no_message_arriving(agent: Agent, kiosk: Kiosk) -> None:
    from ui.screens import TabletRoot

    _route(agent, stops=5)
    offset = [timedelta()]
    root = TabletRoot(agent, zone=ZONE, clock=lambda: datetime.now(UTC) + offset[0],
                      age_refresh_s=0.2)
    kiosk.window.add_widget(root)
    root.open_conflicts(None)
    kiosk.pump(3)

    def ages() -> list[str]:
        return [t for w in root.conflict_screen.walk(restrict=True)
                if isinstance(t := getattr(w, "text", None), str) and t.startswith("as of ")]

    before = ages()
    assert any(t.endswith("3 min ago") for t in before), before
    seq = agent.sync_status().last_seq
    offset[0] = timedelta(minutes=10)  # time passes; the agent hears nothing
    assert kiosk.until(lambda: any(t.endswith("13 min ago") for t in ages())), ages()
    assert agent.sync_status().last_seq == seq


def _burst(agent: Agent, kiosk: Kiosk, hand_in: Callable[[list[Envelope]], None], name: str
           ) -> int:
    """150 stops, then 500 stream entries, one message each, handed in back to back from
    another thread (as the network's thread hands them in); returns the redraws they caused,
    also written to ``name``.json beside the screenshots."""
    from ui.screens import TabletRoot

    class Probe(TabletRoot):
        threads: ClassVar[set[str]] = set()

        def _redraw(self, *args: Any) -> None:
            Probe.threads.add(threading.current_thread().name)
            super()._redraw(*args)

    views = [_view(i, conflict=(i == 3)) for i in range(1, 151)]
    hand_in([_batch(first + 1, views[first:first + 100]).envelope  # 150 stops, seq 1..150
             for first in range(0, len(views), 100)])
    assert kiosk.until(lambda: agent.sync_status().last_seq == 150)
    root = Probe(agent, zone=ZONE)
    kiosk.window.add_widget(root)
    kiosk.pump(4)
    told = []
    agent.subscribe(told.append)
    before = root.redraws

    entries: list[Envelope] = []
    for n in range(500):
        seq = 151 + n
        view = _view(1 + n % 150, status="delivered" if n == 499 else "planned")
        entries.append(ViewChangeMsg(
            v=1, kind="view_change", id=f"e{seq}", origin="gateway", hlc=HLC,
            body=ViewChange(seq=seq, order_id=view.order_id, view=view, head=seq)))

    def burst() -> None:
        hand_in(entries)

    thread = threading.Thread(target=burst)
    thread.start()
    while thread.is_alive():
        kiosk.pump(1)
    thread.join()
    assert kiosk.until(lambda: agent.sync_status().last_seq == 650)
    # the last entry (stop 500 % 150 = ORD-050 delivered) is on screen
    assert kiosk.until(lambda: any(d["order_id"] == "ORD-050" and d["status"] == "delivered"
                                   for d in root.route_screen.list.data))
    kiosk.pump(10)
    redraws = root.redraws - before
    (kiosk.shots / f"{name}.json").write_text(json.dumps(
        {"entries": 500, "observer_calls": len(told), "redraws": redraws}) + "\n",
        encoding="utf-8")
    print(f"{name}: 500 entries, observer called {len(told)} times, {redraws} redraws")
    assert len(told) == 500  # the agent told the UI of every entry (from the burst's thread)
    assert redraws <= 20  # ... and the UI coalesced them into a handful of redraws
    assert Probe.threads == {threading.main_thread().name}  # all of them on Kivy's thread
    return redraws


def test_a_burst_of_500_stream_entries_is_a_handful_of_redraws(
        agent: Agent, kiosk: Kiosk) -> None:
    inbox = Topics("test-depot").inbox("tab-7")
    def hand_in(envelopes: list[Envelope]) -> None:
        for envelope in envelopes:
            agent.session_message(Incoming(inbox, envelope))

    _burst(agent, kiosk, hand_in, "redraws")


def test_a_burst_of_500_entries_through_the_broker_is_a_handful_of_redraws(
        tmp_path: Path, kiosk: Kiosk, network: Network) -> None:
    """The same burst published on the tablet's inbox through the broker (in memory, and a
    real Mosquitto), received by the agent's own session."""
    config = AgentConfig.model_validate({
        "depot": "test-depot", "device": "tab-7", "driver": "7",
        "db": str(tmp_path / "tab-7.sqlite"),
        "broker": {"host": network.host, "port": network.port}, "timezone": "Europe/Berlin"})
    agent = Agent(config, transport=network.transport)
    inbox = Topics("test-depot").inbox("tab-7")
    try:
        agent.start()
        assert agent.wait_online(10)
        with network.probe("gateway-stand-in") as gateway:
            _burst(agent, kiosk,
                   lambda envelopes: gateway.publish_all(inbox, [encode(e) for e in envelopes],
                                                         timeout=30),
                   f"redraws-{network.kind}")
    finally:
        agent.stop()
