"""Bad input on every topic is logged with its topic, counted in the retained ``gateway/status``
and never blocks what comes behind it; echoes and redeliveries change nothing."""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Iterator

import pytest

from agent.service import Agent
from gateway.store.devices import DeviceStore
from sync.codec import decode, encode
from sync.envelope import AckMsg, DriverEvent, DriverEventMsg, StatusMsg
from sync.topics import Topics
from tests.system.depot import Depot, gateway_views, last_seq, tablet_views, wait_for
from tests.system.networks import Network, Probe

TOPICS = Topics("test-depot")
ROWS = [("X", "7", 1, "PLANNED"), ("Y", "7", 2, "PLANNED"), ("Z", "12", 1, "PLANNED")]


@pytest.fixture
def probe(network: Network) -> Iterator[Probe]:
    with network.probe(f"probe-{uuid.uuid4().hex[:8]}") as p:
        yield p


@pytest.fixture
def tab(depot: Depot) -> Agent:
    depot.export(ROWS)
    tab = depot.add_device("tab-7", "7")
    depot.add_device("tab-12", "12")
    assert wait_for(lambda: {s.order_id for s in tab.route()} == {"X", "Y"}, 20)
    return tab


def _event(origin: str, order_id: str, *, event_id: str | None = None, action: str = "note",
           based_on: tuple[str, ...] = ()) -> DriverEventMsg:
    now = dt.datetime.now(dt.UTC)
    event_id = event_id or uuid.uuid4().hex
    return DriverEventMsg(
        v=1, kind="driver_event", id=event_id, origin=origin,
        hlc=f"{int(now.timestamp() * 1000):015d}-000000-{origin}",
        body=DriverEvent(event_id=event_id, order_id=order_id, action=action,  # type: ignore[arg-type]
                         at=now, note="probe" if action == "note" else None,
                         based_on=based_on))


def _as_json(msg: DriverEventMsg, **changes: object) -> bytes:
    doc = json.loads(encode(msg))
    doc.update(changes)
    return json.dumps(doc).encode()


def _counters(probe: Probe, wanted: dict[str, int], timeout: float = 20) -> dict[str, int]:
    """The counters of the retained ``gateway/status`` once they reach ``wanted``."""
    probe.subscribe(TOPICS.gateway_status)
    seen: dict[str, int] = {}

    def reached() -> bool:
        nonlocal seen
        message = probe.get(0.5)
        if message is None or not message.payload:
            return False
        env = decode(bytes(message.payload))
        assert isinstance(env, StatusMsg)
        seen = dict(env.body.counters)
        return all(seen.get(k, 0) >= v for k, v in wanted.items())

    assert wait_for(reached, timeout), f"gateway/status counters {seen}, wanted {wanted}"
    return seen


def test_bad_messages_are_logged_counted_and_never_block_the_next_one(
        depot: Depot, tab: Agent, probe: Probe, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    outbox = TOPICS.outbox("tab-7")
    valid = _event("tab-7", "X")
    bad: list[tuple[str, str, bytes]] = [
        ("malformed JSON", outbox, b'{"v": 1, "kind": "driver_event", '),
        ("oversized", outbox, b'{"v":1,"pad":"' + b"x" * (1024 * 1024 + 10) + b'"}'),
        ("unknown version", outbox, _as_json(valid, v=99)),
        ("unknown kind", outbox, _as_json(valid, kind="teleport")),
        ("unregistered device", TOPICS.outbox("ghost"), encode(_event("ghost", "X"))),
        ("order not on the driver's route", outbox, encode(_event("tab-7", "Z"))),
        ("origin is not the topic's device", outbox, encode(_event("tab-12", "X"))),
    ]
    for what, topic, payload in bad:
        caplog.clear()
        probe.publish(topic, payload)
        event_id = tab.act("note", "X", note=f"after {what}")  # the next valid message
        assert tab.wait_acked(event_id, 20), f"valid event after {what} not acked"
        assert any(topic in r.getMessage() for r in caplog.records
                   if r.levelno >= logging.WARNING), f"{what}: no log line names {topic}"

    counters = _counters(probe, {"bad_messages": 4, "unauthorized_messages": 2,
                                 "refused_events": 1})
    assert counters["bad_messages"] == 4
    for reason in ("not-json", "too-large", "bad-version", "unknown-kind"):
        assert counters[f"bad_messages_{reason}"] == 1, reason
    assert counters["unauthorized_messages"] == 2
    assert counters["refused_events"] == 1
    assert counters.get("worker_errors", 0) == 0
    with depot.store() as store:
        devices = DeviceStore(store)
        assert devices.event_count("tab-7") == len(bad) + 1  # 7 valid notes + the refused one
        assert devices.event_count("ghost") == 0
        sources = dict(store.conn.execute(
            "SELECT order_id, count(*) FROM claim_sets WHERE source='driver' GROUP BY order_id"))
    assert sources == {"X": 7}  # nothing from the refused, forged or unknown ones
    assert depot.service.link.connected.is_set()


def test_garbage_on_a_tablet_inbox_is_counted_and_the_stream_goes_on(
        depot: Depot, tab: Agent, probe: Probe) -> None:
    inbox = TOPICS.inbox("tab-7")
    probe.publish(inbox, b"\xff\xfe not json at all")
    probe.publish(inbox, b'{"v": 2, "kind": "view_change"}')
    probe.publish(inbox, b"[1, 2, 3]")
    assert wait_for(lambda: tab.sync_status().codec_errors == 3, 20)
    counters = tab.sync_status().counters
    assert counters["codec_errors.not-json"] == 1
    assert counters["codec_errors.bad-version"] == 1
    assert counters["codec_errors.not-object"] == 1

    reply = depot.dispatch(action="cancel", order_id="Y")
    assert reply.body.ok, reply.body.reason
    assert wait_for(lambda: any(s.order_id == "Y" and s.status_shown == "conflict"
                                for s in tab.route()), 20)
    assert wait_for(lambda: tablet_views(tab) == gateway_views(depot, "tab-7"), 20)
    event_id = tab.act("arrive", "X")
    assert tab.wait_acked(event_id, 20)


def test_a_redelivered_driver_event_changes_nothing_and_is_acked_again(
        depot: Depot, tab: Agent, probe: Probe) -> None:
    probe.subscribe(TOPICS.acks("tab-7"))
    view = next(s.view for s in tab.route() if s.order_id == "X")
    based_on = tuple(c.claim_id for f in view.fields.values() for c in f.candidates)
    payload = encode(_event("tab-7", "X", event_id="ev-twice", action="deliver",
                            based_on=based_on))
    probe.publish(TOPICS.outbox("tab-7"), payload)
    assert wait_for(lambda: any(s.order_id == "X" and s.view.value("status") == "delivered"
                                for s in tab.route()), 20)
    assert wait_for(lambda: tab.sync_status().last_seq == last_seq(depot, "tab-7"), 20)
    seq = last_seq(depot, "tab-7")
    probe.publish(TOPICS.outbox("tab-7"), payload)  # the broker or the tablet sent it again

    acks = []
    while len(acks) < 2:
        message = probe.get(20)
        assert message is not None, f"acks so far: {acks}"
        env = decode(bytes(message.payload))
        assert isinstance(env, AckMsg)
        acks.extend(e for e in env.body.event_ids if e == "ev-twice")
    depot.service.call(lambda store: None)  # the worker has handled both
    with depot.store() as store:
        assert DeviceStore(store).event_count("tab-7") == 1
        assert DeviceStore(store).counters()["duplicate_events"] == 1
        claims = store.conn.execute(
            "SELECT count(*) FROM claim_sets WHERE source='driver'").fetchone()[0]
        results = [r for r in store.pending_results() if r["result_id"] == "tab-7:ev-twice"]
    assert claims == 1
    assert len(results) == 1
    assert last_seq(depot, "tab-7") == seq  # nothing new was streamed to anyone


def test_an_identical_view_produces_no_stream_entry(depot: Depot, tab: Agent) -> None:
    assert wait_for(lambda: tab.sync_status().last_seq == last_seq(depot, "tab-7"), 20)
    seqs = (last_seq(depot, "tab-7"), last_seq(depot, "tab-12"))
    depot.export(list(reversed(ROWS)))  # a new export file, the same orders and values
    depot.export(ROWS)
    depot.service.request_refresh("test")
    depot.service.call(lambda store: None)  # every refresh queued before this has run
    assert (last_seq(depot, "tab-7"), last_seq(depot, "tab-12")) == seqs
    reply = depot.dispatch(action="assign", order_id="Z", driver="12")  # agrees with legacy
    assert reply.body.ok, reply.body.reason
    assert last_seq(depot, "tab-7") == seqs[0]  # not driver 7's order: nothing for tab-7


def test_a_command_the_gateway_fails_to_apply_is_answered_and_changes_nothing(
        depot: Depot, tab: Agent, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from gateway.streams import commands

    real_cancel = commands.cancel

    def broken_cancel(*args: object, **kwargs: object) -> object:
        real_cancel(*args, **kwargs)  # its writes happen, then it fails: all rolled back
        raise RuntimeError("a bug")

    seq = last_seq(depot, "tab-7")
    monkeypatch.setattr(commands, "cancel", broken_cancel)
    with caplog.at_level(logging.ERROR, logger="gateway.streams.service"):
        reply = depot.dispatch(action="cancel", order_id="X", reason="customer cancelled")
    assert not reply.body.ok
    assert "could not apply it (RuntimeError" in reply.body.reason
    assert "may be sent again" in reply.body.reason
    assert any("failed" in r.getMessage() for r in caplog.records)
    assert last_seq(depot, "tab-7") == seq  # nothing was streamed: nothing changed
    depot.service.call(lambda store: None)  # answered before it was counted: both done now
    with depot.store() as store:
        assert not store.conn.execute(
            "SELECT 1 FROM claim_sets WHERE source='dispatch'").fetchall()
        assert DeviceStore(store).counters().get("failed_commands") == 1

    monkeypatch.setattr(commands, "cancel", real_cancel)  # the bug fixed: sent again, applied
    assert depot.dispatch(action="cancel", order_id="X", reason="customer cancelled").body.ok
    assert wait_for(lambda: last_seq(depot, "tab-7") > seq, 10)


def test_a_command_is_answered_even_when_the_store_is_what_fails(
        depot: Depot, tab: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    from gateway.streams import commands
    from gateway.streams.service import GatewayService

    def failing(*_args: object, **_kwargs: object) -> object:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(commands, "cancel", failing)
    monkeypatch.setattr(GatewayService, "_hlc", failing)  # no stamp from the store either
    monkeypatch.setattr(GatewayService, "_count", failing)  # nor a counter
    reply = depot.dispatch(action="cancel", order_id="X")
    assert not reply.body.ok
    assert "could not apply it (StoreError" in reply.body.reason  # sqlite3 errors: StoreError
    monkeypatch.undo()
    assert depot.dispatch(action="assign", order_id="Z", driver="12").body.ok  # worker lives on


def test_a_tablet_too_old_to_read_view_changes_is_logged_and_counted(
        depot: Depot, tab: Agent, probe: Probe, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    old = StatusMsg.model_validate({
        "v": 1, "kind": "status", "id": "birth-1", "origin": "tab-12",
        "hlc": "001795777200000-000000-tab-12",
        "body": {"role": "device", "online": True, "at": "2026-11-27T06:00:00Z",
                 "app_version": "0.1.0", "last_seq": 0}})
    probe.publish(TOPICS.device_status("tab-12"), encode(old))
    counters = _counters(probe, {"outdated_devices": 1})
    assert counters["outdated_devices"] == 1
    assert any("tab-12 runs crossdock 0.1.0" in r.getMessage() for r in caplog.records)
    with depot.store() as store:  # the agents of this checkout are not counted
        assert DeviceStore(store).counters().get("outdated_devices") == 1
