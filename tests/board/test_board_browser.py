"""The dispatch board in a real browser (Debian's chromium, headless, driven by Playwright),
against a real gateway service on a real Mosquitto with two tablets running the real agent.

The board acts through ``crossdock dispatch``'s path (MQTT commands in the person's name), so
what the tablets get and what the audit log says is what the gateway itself did. Live-update
latency (a change at the gateway until the browser shows it) is printed, not asserted.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.board.server import BoardServer
from gateway.broker.process import ManagedBroker
from gateway.config import load_config
from gateway.ingest.pipeline import ingest_source
from gateway.store import listings
from gateway.store.accounts import AccountStore
from gateway.store.core import Store
from gateway.store.listings import proposals
from gateway.streams.service import GatewayService
from tests.board.conftest import Optimizer, Shots
from tests.board.depotfiles import fetch
from tests.broker import free_port
from tests.system.depot import Depot, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.board, pytest.mark.slow]

PASSWORD = "correct horse"
ROWS = [("O-1", "D1", 1, "PLANNED"), ("O-2", "D1", 2, "PLANNED"), ("O-3", "D2", 1, "PLANNED"),
        ("O-4", "D2", 2, "PLANNED"), ("O-5", "D2", 3, "MAYBE")]  # O-5: an unknown status
OPTIMIZER = """
[[sources]]
name = "optimizer"
kind = "http"
url = "{url}"
endpoints = ["/plan"]
mode = "approve"
approval_window_s = 1800
interval_s = 3600
"""


class BoardDepot(Depot):
    """The system tests' depot with an optimizer in approve mode and the board served."""

    def __init__(self, root: Path, broker: ManagedBroker, optimizer: Optimizer) -> None:
        super().__init__(root, broker.host, broker.port)
        with (root / "gateway.toml").open("a", encoding="utf-8") as f:
            f.write(OPTIMIZER.format(url=optimizer.url))
        self.cfg = load_config(root / "gateway.toml")
        self.service = GatewayService(self.cfg, host=broker.host, port=broker.port,
                                      clock=self.clock, status_interval_s=0.5, tick_s=0.2)
        with Store(self.cfg.db_path) as store:
            AccountStore(store).add_user("anna", PASSWORD, self.clock())
        self.board = BoardServer(self.cfg, port=free_port())

    def start(self) -> None:
        super().start()
        self.board.start()

    def stop(self) -> None:
        self.board.stop()
        super().stop()

    def ingest_optimizer(self) -> None:
        def run(store: Store) -> Any:
            return ingest_source(store, self.cfg, self.cfg.source("optimizer"), now=self.clock)

        self.service.call(run)


@pytest.fixture
def depot(tmp_path: Path, mosquitto: ManagedBroker, optimizer: Optimizer
          ) -> Iterator[BoardDepot]:
    d = BoardDepot(tmp_path / "depot", mosquitto, optimizer)
    d.start()
    try:
        d.export(ROWS)
        d.add_device("tab-1", "D1")
        d.add_device("tab-2", "D2")
        yield d
    finally:
        d.stop()


def open_board(chromium: Any, depot: BoardDepot, *, password: str = PASSWORD) -> Any:
    context = chromium.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    page.goto(depot.board.url + "/")
    assert page.url.endswith("/login")
    page.fill("#name", "anna")
    page.fill("#password", password)
    with page.expect_navigation():
        page.keyboard.press("Enter")  # by keyboard: the form submits from the password field
    return page


def live(page: Any) -> None:
    page.wait_for_function("window.boardVersion > 0")


def driver_of(agent: Any, order_id: str) -> tuple[str, Any] | None:
    for stop in agent.route():
        if stop.order_id == order_id:
            fv = stop.view.fields.get("driver")
            return None if fv is None else (fv.state, fv.value)
    return None


def test_a_conflict_appears_live_and_resolving_it_reaches_both_tablets_with_the_name(
        chromium: Any, depot: BoardDepot, shots: Shots) -> None:
    page = open_board(chromium, depot)
    assert "Logged in as" in page.inner_text("header"), page.inner_text("main")
    assert "Europe/Berlin" in page.inner_text("header")
    live(page)
    assert page.locator("#conflicts").inner_text().count("O-1") == 0

    started = time.monotonic()
    reply = depot.dispatch(action="assign", order_id="O-1", driver="D2")  # no override
    assert reply.body.ok
    section = page.locator("#conflicts")
    section.get_by_text("O-1", exact=True).wait_for(timeout=10_000)
    latency = time.monotonic() - started
    print(f"\nboard live-update latency (dispatch command -> browser shows it): "
          f"{latency * 1000:.0f} ms")
    text = section.inner_text()
    assert "legacy" in text and "dispatch" in text and "D1" in text and "D2" in text
    assert "old" in text and "escalates" in text  # each side's age, the deadline counting
    shots.take(page, "board-conflicts")

    # resolve by keyboard: Tab from the top of the page to the choice, Enter, then Confirm
    page.locator("body").focus()
    for _ in range(80):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "choose-O-1-driver-dispatch":
            break
    assert page.evaluate("document.activeElement.id") == "choose-O-1-driver-dispatch"
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "You choose" in page.inner_text("main")
    assert "D1 from legacy" in page.inner_text("main")  # what it is chosen over
    with page.expect_navigation():
        page.keyboard.press("Enter")  # Confirm has the focus
    assert "Done: resolve" in page.inner_text("#outcome")

    tab1, tab2 = depot.agents
    assert wait_for(lambda: driver_of(tab2, "O-1") == ("resolved", "D2"))
    assert wait_for(lambda: driver_of(tab1, "O-1") is None)  # left D1's route
    with depot.store() as store:
        (entry,) = [e for e in store.audit_log() if e["action"] == "resolve"]
    assert entry["actor"] == "dispatch:anna"
    assert len(entry["detail"]["seen"]) == 2

    page.goto(depot.board.url + "/#audit")
    live(page)
    audit = page.locator("#audit").inner_text()
    assert "dispatch:anna" in audit and "chose dispatch: D2" in audit and "legacy: D1" in audit
    assert "No open conflicts" in page.locator("#conflicts").inner_text()


def test_a_proposal_approved_on_the_board_reaches_the_tablet(
        chromium: Any, depot: BoardDepot, optimizer: Optimizer, shots: Shots) -> None:
    optimizer.proposals = [{"order_id": "O-3", "driver": "D1"}]
    page = open_board(chromium, depot)
    live(page)
    depot.ingest_optimizer()
    with depot.store() as store:
        (held,) = proposals(store)
    box = page.locator("#proposals")
    box.get_by_text(held.proposal_id).wait_for(timeout=10_000)
    assert "window ends" in box.inner_text() and "(now D2)" in box.inner_text()
    with page.expect_navigation():
        page.click(f"[id='approve-{held.proposal_id}']")
    with page.expect_navigation():
        page.click("#confirm")
    assert "Done: approve" in page.inner_text("#outcome")
    tab1 = depot.agents[0]
    # the optimizer's D1 reaches D1's tablet, beside legacy's D2: a conflict for a person
    assert wait_for(lambda: driver_of(tab1, "O-3") == ("conflict", None))
    (stop,) = [s for s in tab1.route() if s.order_id == "O-3"]
    assert {c.source: c.value for c in stop.view.fields["driver"].candidates} == {
        "legacy": "D2", "optimizer": "D1"}
    with depot.store() as store:
        assert proposals(store, states=("approved",))[0].decided_by == "dispatch:anna"

    depot.agents[1].stop()  # tab-2 goes offline: the board says since when
    page.goto(depot.board.url + "/")
    live(page)
    page.locator("#tablets").get_by_text("offline").wait_for(timeout=10_000)
    tablets = page.locator("#tablets").inner_text()
    assert "tab-2" in tablets and "1 of 2 online" in tablets
    # each tablet's last stream ack: the moment the gateway recorded, and an age that counts
    ack = page.locator("#row-tablet-tab-1 .ack")

    def shown_is_stored() -> bool:
        with depot.store() as store:
            stored = {t.device: t.acked_at for t in listings.tablets(store)}["tab-1"]
        return stored is not None and ack.get_attribute("data-t") == stored

    assert wait_for(shown_is_stored, 20)
    cell = page.locator("#row-tablet-tab-1 td:has(.ack)").inner_text()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d, \d+ s old", cell.strip()), cell
    before = ack.inner_text()
    page.wait_for_function("(before) => document.querySelector('#row-tablet-tab-1 .ack')"
                           ".textContent !== before", arg=before, timeout=10_000)
    assert page.locator("#row-tablet-tab-2 .ack").count() == 1  # acked before it went offline
    # at 1366x768 every section fits the width: nothing hides beyond a sideways scroll
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shots.take(page, "board-tablets", "#tablets")
    sources = page.locator("#sources").inner_text()
    # the age's unit depends on the hour the test runs (minutes just after midnight)
    assert re.search(r"legacy: nightly at 00:00, as of [^,]+, [\d.]+ (s|min|h) old", sources)
    quarantine = page.locator("#quarantine").inner_text()
    assert "MAYBE" in quarantine and "orders.dbf" in quarantine
    shots.take(page, "board-sources-quarantine", "#sources", "#quarantine")


def test_a_wrong_password_is_refused(chromium: Any, depot: BoardDepot) -> None:
    page = open_board(chromium, depot, password="not it")
    assert page.url.endswith("/login")
    assert "Wrong name or password" in page.inner_text("main")
    response = page.goto(depot.board.url + "/api/state")
    assert response is not None and response.status == 401


ROUTES = ["/", "/events", "/report", "/api/state", "/api/report", "/static/board.js",
          "/confirm/approve?proposal_id=x", "/confirm/resolve?order_id=O-1&field=driver&choose=x"]


def test_every_route_and_the_event_stream_refuse_a_request_without_a_session(
        chromium: Any, depot: BoardDepot) -> None:
    depot.dispatch(action="assign", order_id="O-1", driver="D2")
    for path in ROUTES:
        status, headers, text = fetch(depot.board.url, path)
        assert status in (303, 401), path
        assert "O-1" not in text, path
        if status == 303:
            assert headers["location"] == "/login", path
    for path in ("/act/resolve", "/act/approve", "/act/assign", "/logout"):
        status, _headers, _text = fetch(depot.board.url, path, method="POST", form={
            "order_id": "O-1", "field": "driver", "choose": "legacy", "csrf": "x"})
        assert status == 401, path
    with depot.store() as store:  # nothing was sent in anyone's name
        assert not [e for e in store.audit_log() if e["action"] == "resolve"]
    # a browser's EventSource without a session: refused, never a stream
    page = chromium.new_page()
    page.goto(depot.board.url + "/login")
    state = page.evaluate("""() => new Promise(done => {
        const s = new EventSource('/events');
        s.onopen = () => { s.close(); done('open'); };
        s.onerror = () => { const r = s.readyState; s.close(); done('error ' + r); };
    })""")
    assert state == "error 2"  # CLOSED: a 401 is not retried
