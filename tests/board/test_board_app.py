"""The board's routes through Starlette's TestClient: logins, sessions, CSRF, what every route
answers without a session, the sections it shows, and an action handed to the command path."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.board.app import create_app
from gateway.board.commands import Reply
from gateway.board.page import Board
from gateway.config import GatewayConfig
from gateway.store.accounts import AccountStore, check_password, hash_password
from gateway.store.core import Store
from gateway.timefmt import depot_zone
from tests.board.depotfiles import (
    PASSWORD,
    add_device,
    dispatch_assign,
    fetch,
    now,
    write_depot,
)

ROUTES = [("GET", "/"), ("GET", "/events"), ("GET", "/report"), ("GET", "/api/state"),
          ("GET", "/api/report"), ("GET", "/static/board.js"),
          ("GET", "/confirm/resolve?order_id=O-1&field=driver&choose=x"),
          ("POST", "/act/resolve"), ("POST", "/act/approve"), ("POST", "/logout")]


class Recorder:
    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, person: str, body: dict[str, Any]) -> Reply:
        self.sent.append((person, body))
        return self.reply


@pytest.fixture
def cfg(tmp_path: Path) -> GatewayConfig:
    return write_depot(tmp_path / "depot")


def make_client(cfg: GatewayConfig, reply: Reply | None = None) -> tuple[TestClient, Recorder]:
    recorder = Recorder(reply or Reply(True, "", {"resolution_id": "resolve:x"}))
    board = Board(cfg, zone=depot_zone(cfg), commands=recorder)
    return TestClient(create_app(board), base_url="http://127.0.0.1:8080"), recorder


def login(client: TestClient, name: str = "anna", password: str = PASSWORD) -> Any:
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    return client.post("/login", data={"csrf": token.group(1), "name": name,
                                       "password": password}, follow_redirects=False)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def test_password_hashes_are_salted_scrypt_and_check_only_the_right_password() -> None:
    one, two = hash_password("pw-12345678"), hash_password("pw-12345678")
    assert one != two and one.startswith("scrypt$")
    assert check_password("pw-12345678", one)
    assert not check_password("pw-12345679", one)
    assert not check_password("pw-12345678", "md5$whatever")


def test_the_store_keeps_no_password_and_no_session_token(cfg: GatewayConfig) -> None:
    client, _ = make_client(cfg)
    response = login(client)
    token = response.cookies.get("crossdock_board")
    assert token
    raw = Path(cfg.db_path).read_bytes() + Path(str(cfg.db_path) + "-wal").read_bytes()
    assert PASSWORD.encode() not in raw and token.encode() not in raw


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_refuses_a_request_without_a_session(cfg: GatewayConfig, method: str,
                                                         path: str) -> None:
    dispatch_assign(cfg, "O-1", "D2", "c1")  # something to leak, if a route leaked
    client, recorder = make_client(cfg)
    response = client.request(method, path, follow_redirects=False,
                              data={"csrf": "x", "proposal_id": "p", "order_id": "O-1",
                                    "field": "driver", "choose": "legacy"} if method == "POST"
                              else None)
    if response.status_code == 303:
        assert response.headers["location"] == "/login"
    else:
        assert response.status_code == 401
    assert "O-1" not in response.text and "conflict" not in response.text.lower()
    assert recorder.sent == []


def test_a_forged_or_expired_cookie_is_no_session(cfg: GatewayConfig) -> None:
    client, _ = make_client(cfg)
    client.cookies.set("crossdock_board", "made-up")
    assert client.get("/api/state").status_code == 401


def test_a_wrong_password_and_an_unknown_name_are_refused(cfg: GatewayConfig) -> None:
    client, _ = make_client(cfg)
    wrong = login(client, password="not the password")
    assert wrong.status_code == 401 and "Wrong name or password" in wrong.text
    assert "crossdock_board" not in wrong.cookies
    assert login(client, name="nobody").status_code == 401
    assert client.get("/api/state").status_code == 401


def test_login_without_its_form_token_is_refused(cfg: GatewayConfig) -> None:
    client, _ = make_client(cfg)
    response = client.post("/login", data={"name": "anna", "password": PASSWORD},
                           follow_redirects=False)
    assert response.status_code == 403


def test_the_session_cookie_is_httponly_and_samesite_strict(cfg: GatewayConfig) -> None:
    client, _ = make_client(cfg)
    response = login(client)
    assert response.status_code == 303
    header = response.headers["set-cookie"].lower()
    assert "httponly" in header and "samesite=strict" in header


def test_the_board_shows_a_conflict_with_both_sides_and_the_zone(cfg: GatewayConfig) -> None:
    dispatch_assign(cfg, "O-1", "D2", "c1")
    client, _ = make_client(cfg)
    login(client)
    page = client.get("/")
    assert page.status_code == 200
    assert "Europe/Berlin" in page.text
    section = page.text.split('id="conflicts"')[1].split("</section>")[0]
    assert "O-1" in section and "legacy" in section and "dispatch" in section
    assert ">D1<" in section and ">D2<" in section and "old</span>" in section
    state = client.get("/api/state").json()
    (conflict,) = state["conflicts"]
    assert {c["source"]: c["value"] for c in conflict["candidates"]} == {"legacy": "D1",
                                                                          "dispatch": "D2"}


def test_an_action_without_the_session_csrf_token_is_refused(cfg: GatewayConfig) -> None:
    dispatch_assign(cfg, "O-1", "D2", "c1")
    client, recorder = make_client(cfg)
    login(client)
    response = client.post("/act/resolve", data={"order_id": "O-1", "field": "driver",
                                                 "choose": "legacy", "csrf": "forged"})
    assert response.status_code == 403
    assert recorder.sent == []


def test_an_action_from_another_origin_is_refused(cfg: GatewayConfig) -> None:
    client, recorder = make_client(cfg)
    login(client)
    csrf = csrf_of(client.get("/").text)
    response = client.post("/act/approve", data={"proposal_id": "p", "csrf": csrf},
                           headers={"Origin": "http://evil.example"})
    assert response.status_code == 403 and recorder.sent == []


def test_a_confirmed_resolve_is_sent_in_the_persons_name(cfg: GatewayConfig) -> None:
    dispatch_assign(cfg, "O-1", "D2", "c1")
    client, recorder = make_client(cfg)
    login(client)
    claim = client.get("/api/state").json()["conflicts"][0]["candidates"][0]["claim_id"]
    confirm = client.get("/confirm/resolve", params={"order_id": "O-1", "field": "driver",
                                                     "choose": claim})
    assert confirm.status_code == 200 and "You choose" in confirm.text
    assert recorder.sent == []  # looking is not acting
    done = client.post("/act/resolve", data={"order_id": "O-1", "field": "driver",
                                             "choose": claim, "csrf": csrf_of(confirm.text)})
    assert done.status_code == 200 and "Done: resolve" in done.text
    assert recorder.sent == [("anna", {"action": "resolve", "order_id": "O-1",
                                       "field": "driver", "choose": claim})]


def test_a_refusal_shows_the_gateways_reason(cfg: GatewayConfig) -> None:
    client, _ = make_client(cfg, Reply(False, "stale proposal p: already approved", {}))
    login(client)
    csrf = csrf_of(client.get("/").text)
    response = client.post("/act/approve", data={"proposal_id": "p", "csrf": csrf})
    assert response.status_code == 409
    assert "stale proposal p: already approved" in response.text


def test_logout_ends_the_session(cfg: GatewayConfig) -> None:
    client, _ = make_client(cfg)
    login(client)
    csrf = csrf_of(client.get("/").text)
    assert client.post("/logout", data={"csrf": csrf}, follow_redirects=False
                       ).status_code == 303
    assert client.get("/api/state").status_code == 401
    with Store(cfg.db_path) as store:
        assert store.audit_log(2)[0]["action"] == "logout"


def test_a_new_password_ends_the_old_sessions(cfg: GatewayConfig) -> None:
    client, _ = make_client(cfg)
    login(client)
    with Store(cfg.db_path) as store:
        AccountStore(store).add_user("anna", "another password", now(), replace=True)
    assert client.get("/api/state").status_code == 401


def test_an_escalated_conflict_says_the_stop_is_on_hold_in_words(cfg: GatewayConfig) -> None:
    from gateway.streams.views import refresh

    dispatch_assign(cfg, "O-1", "D2", "c1")
    with Store(cfg.db_path) as store:  # past the deadline: escalated, as the tick does
        refresh(store, cfg.merge_policy(), now() + dt.timedelta(minutes=31))
    client, _ = make_client(cfg)
    login(client)
    section = client.get("/").text.split('id="conflicts"')[1].split("</section>")[0]
    assert "ESCALATED — stop on hold" in section and "passed" in section


def test_an_override_is_confirmed_with_the_driver_typed_and_sent_as_override(
        cfg: GatewayConfig) -> None:
    dispatch_assign(cfg, "O-1", "D2", "c1")
    client, recorder = make_client(cfg, Reply(True, "", {"resolution_id": "override:x"}))
    login(client)
    confirm = client.get("/confirm/assign", params={"order_id": "O-1"})
    assert confirm.status_code == 200
    assert 'id="driver"' in confirm.text and "legacy D1" in confirm.text
    done = client.post("/act/assign", data={"order_id": "O-1", "driver": "D3",
                                            "csrf": csrf_of(confirm.text)})
    assert done.status_code == 200
    assert recorder.sent == [("anna", {"action": "assign", "order_id": "O-1", "driver": "D3",
                                       "override": True})]


def test_refused_driver_actions_show_with_their_reason(cfg: GatewayConfig) -> None:
    from gateway.store.devices import DeviceStore

    add_device(cfg, "tab-1", "D1")
    add_device(cfg, "tab-2", "D2")
    with Store(cfg.db_path) as store, store.transaction():
        DeviceStore(store).record_event(
            "ev-9", "tab-1", "O-3", "deliver", json.dumps({"event_id": "ev-9"}),
            "refused: order O-3 is not on driver D1's route", now())
    client, _ = make_client(cfg)
    login(client)
    section = client.get("/").text.split('id="refused"')[1].split("</section>")[0]
    assert "tab-1" in section and "O-3" in section and "deliver" in section
    assert "order O-3 is not on driver D1&#39;s route" in section
    tablets = client.get("/api/state").json()["tablets"]
    acked = {t["device"]: t["last_event_at"] for t in tablets}
    assert acked["tab-1"] is not None and acked["tab-2"] is None
    page = client.get("/").text.split('id="tablets"')[1].split("</section>")[0]
    assert "none yet" in page and "s old" in page


def test_the_board_serves_https_with_the_depots_certificate_beyond_loopback(
        tmp_path: Path) -> None:
    from gateway.board.server import BoardServer
    from gateway.broker.tls import make_self_signed
    from gateway.config import load_config
    from tests.broker import free_port

    write_depot(tmp_path / "depot")
    files = make_self_signed(tmp_path / "depot", ["127.0.0.1"], common_name="board")
    toml = tmp_path / "depot" / "gateway.toml"
    toml.write_text(toml.read_text().replace(
        'host = "127.0.0.1"\nport = 8080',
        f'host = "0.0.0.0"\nport = {free_port()}\ncertfile = "{files.certfile.name}"\n'
        f'keyfile = "{files.keyfile.name}"'))
    server = BoardServer(load_config(toml))
    server.start()
    try:
        assert server.url.startswith("https://")
        url = server.url.replace("0.0.0.0", "127.0.0.1")
        status, headers, _text = fetch(url, "/login", cafile=files.certfile)
        assert status == 200
        assert "secure" in headers["set-cookie"].lower()
    finally:
        server.stop()


def test_after_five_wrong_passwords_even_the_right_one_waits(cfg: GatewayConfig) -> None:
    client, _ = make_client(cfg)
    for _ in range(5):
        assert login(client, password="guess").status_code == 401
    refused = login(client)
    assert refused.status_code == 429 and "Too many wrong passwords" in refused.text
    assert "crossdock_board" not in refused.cookies


def test_a_source_held_as_suspect_says_so_with_the_accept_command(cfg: GatewayConfig) -> None:
    from gateway.ingest.pipeline import ingest_source
    from tests.system.depot import write_orders

    client, _ = make_client(cfg)
    login(client)
    section = client.get("/").text.split('id="sources"')[1].split("</section>")[0]
    assert '<span class="tag ok">ok</span>' in section and "held as suspect" not in section
    write_orders(cfg.path(cfg.sources[0].path or ""), [])  # an empty export: would withdraw all
    with Store(cfg.db_path) as store:
        (run,) = ingest_source(store, cfg, cfg.sources[0], now=now)
    assert run.status == "suspect"
    section = client.get("/").text.split('id="sources"')[1].split("</section>")[0]
    assert '<span class="tag hold">held as suspect: nothing applied</span>' in section
    assert "would withdraw 3 of 3 live orders" in section
    assert f"crossdock gateway ingest --accept {run.run_id}" in section
    (row,) = client.get("/api/state").json()["sources"]
    assert row["status"] == "suspect" and row["held"]["run_id"] == run.run_id


def _refuse(cfg: GatewayConfig, device: str, driver: str, event_id: str, order_id: str,
            at: dt.datetime) -> None:
    """A driver event the gateway refuses, stored and audited as its service does."""
    from gateway.store.devices import DeviceStore
    from gateway.streams import commands
    from sync.envelope import DriverEvent

    event = DriverEvent(event_id=event_id, order_id=order_id, action="deliver", at=at)
    with Store(cfg.db_path) as store, store.transaction():
        outcome = commands.driver_event(store, device, driver, event,
                                        policy=cfg.merge_policy(), now=at)
        assert outcome.startswith("refused:")
        DeviceStore(store).record_event(event_id, device, order_id, "deliver",
                                        event.model_dump_json(), outcome, at)


def test_the_board_and_gateway_refused_list_the_same_refused_events(cfg: GatewayConfig) -> None:
    from click.testing import CliRunner

    from crossdock_cli import cli
    from gateway.store.devices import DeviceStore

    add_device(cfg, "tab-1", "D1")
    add_device(cfg, "tab-2", "D2")
    t0 = now() - dt.timedelta(minutes=10)
    # the same event id on two devices: two events (ids are unique per device only)
    _refuse(cfg, "tab-1", "D1", "ev-1", "O-3", t0)
    _refuse(cfg, "tab-2", "D2", "ev-1", "O-1", t0 + dt.timedelta(minutes=1))
    with Store(cfg.db_path) as store, store.transaction():
        DeviceStore(store).record_dismissal("ev-1", "tab-2", "ev-2", t0 + dt.timedelta(minutes=2))
    result = CliRunner().invoke(cli, ["gateway", "refused", "--config",
                                      str(cfg.path("gateway.toml")), "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [(e["device"], e["driver"], e["order_id"]) for e in listed] == [
        ("tab-1", "D1", "O-3"), ("tab-2", "D2", "O-1")]
    assert listed[0]["dismissed_at"] is None and listed[1]["dismissed_at"] is not None
    client, _ = make_client(cfg)
    login(client)
    state = client.get("/api/state").json()
    assert state["refused"] == listed[::-1]  # the same rows, newest first
    assert state["refused_total"] == 2 and state["refused_open"] == 1
    section = client.get("/").text.split('id="refused"')[1].split("</section>")[0]
    assert "2, 1 not dismissed" in section
    assert section.count("shown, not dismissed") == 1 and "dismissed 20" in section


def test_tablets_show_the_last_stream_ack_with_its_age_and_live_a_moment_to_count_from(
        cfg: GatewayConfig) -> None:
    from gateway.store.devices import DeviceStore

    add_device(cfg, "tab-1", "D1")
    add_device(cfg, "tab-2", "D2")
    acked = now() - dt.timedelta(minutes=7)
    with Store(cfg.db_path) as store, store.transaction():
        head = DeviceStore(store).bounds("tab-1")[1]
        DeviceStore(store).set_applied("tab-1", head, acked)
    client, _ = make_client(cfg)
    login(client)
    tablets = {t["device"]: t for t in client.get("/api/state").json()["tablets"]}
    assert tablets["tab-1"]["acked_at"] == acked.isoformat() and tablets["tab-1"]["behind"] == 0
    assert tablets["tab-2"]["acked_at"] is None and tablets["tab-2"]["behind"] > 0
    page = client.get("/").text.split('id="tablets"')[1].split("</section>")[0]
    assert "Last stream ack" in page
    row = page.split('id="row-tablet-tab-1"')[1].split("</tr>")[0]
    assert f'class="age ack" data-t="{acked.isoformat()}">7 min old' in row
    other = page.split('id="row-tablet-tab-2"')[1].split("</tr>")[0]
    assert "never" in other
    board = Board(cfg, zone=depot_zone(cfg), commands=Recorder(Reply(True, "", {})))
    with Store(cfg.db_path) as store:  # live rows: the page's script counts from data-t
        sections, _state = board.render_sections(store, now(), live=True)
    assert f'data-t="{acked.isoformat()}"></span>' in sections["row-tablet-tab-1"]
