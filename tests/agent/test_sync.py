"""The agent against a real Mosquitto and a fake gateway: stream, gaps, snapshots, outbox."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import AgentConfig, load_config
from agent.engine import Engine
from agent.service import Agent
from sync.codec import decode
from sync.envelope import SourceFreshness, StatusMsg
from tests.agent.conftest import Broker
from tests.agent.factories import at, conflicted, view, write_config
from tests.agent.fakegw import WAIT, FakeGateway

pytestmark = pytest.mark.broker


@pytest.fixture
def config(tmp_path: Path, agent_broker: Broker) -> AgentConfig:
    return load_config(write_config(tmp_path, port=agent_broker.port))


@pytest.fixture
def agent(config: AgentConfig, gateway: FakeGateway) -> Iterator[Agent]:
    a = Agent(config)
    a.start()
    try:
        assert a.wait_online(WAIT)
        assert gateway.wait_for(lambda: 0 in gateway.resyncs)  # asked on connect
        yield a
    finally:
        a.stop()


def _last_seq(agent: Agent, seq: int) -> bool:
    return agent.wait_for(lambda: agent.sync_status().last_seq == seq, WAIT)


def test_stream_is_applied_in_order_and_reported(agent: Agent, gateway: FakeGateway) -> None:
    gateway.change("B", view("B", sequence=2))
    gateway.change("A", view("A", sequence=1))
    gateway.change("C", conflicted("C", sequence=3))
    assert _last_seq(agent, 3)
    assert [s.order_id for s in agent.route()] == ["A", "B", "C"]
    assert [(c.order_id, c.field) for c in agent.conflicts()] == [("C", "assignment")]
    assert gateway.wait_for(lambda: 3 in gateway.applied)


def test_duplicate_entry_is_ignored(agent: Agent, gateway: FakeGateway) -> None:
    gateway.change("A", view("A"))
    gateway.change("A", view("A", "cancelled"))
    assert _last_seq(agent, 2)
    gateway.send(1)  # redelivered: the older view must not come back
    gateway.change("B", view("B"))
    assert _last_seq(agent, 3)
    assert agent.sync_status().counters.get("duplicates") == 1
    assert {s.order_id: s.status_shown for s in agent.route()} == {"A": "cancelled", "B": "planned"}


def test_gap_asks_for_resync_and_the_replay_fills_it(agent: Agent, gateway: FakeGateway) -> None:
    gateway.change("A", view("A"))
    assert _last_seq(agent, 1)
    gateway.change("B", view("B"), send=False)  # lost on the way
    gateway.change("C", view("C"))
    assert gateway.wait_for(lambda: 1 in gateway.resyncs)
    assert _last_seq(agent, 3)
    assert [s.order_id for s in agent.route()] == ["A", "B", "C"]
    assert agent.sync_status().counters.get("gaps", 0) >= 1


def test_a_view_changes_batch_is_applied_and_a_gap_before_one_is_repaired(
    agent: Agent, gateway: FakeGateway
) -> None:
    for order_id in ("A", "B", "C"):
        gateway.change(order_id, view(order_id), send=False)
    gateway.send_batch(1, 3)
    assert _last_seq(agent, 3)
    gateway.change("D", view("D"), send=False)  # lost on the way
    gateway.change("A", None, send=False)
    gateway.change("E", view("E"), send=False)
    gateway.send_batch(5, 6)  # the gap: a resync, answered by the replay of 4..6
    assert gateway.wait_for(lambda: 3 in gateway.resyncs)
    assert _last_seq(agent, 6)
    assert [s.order_id for s in agent.route()] == ["B", "C", "D", "E"]
    assert gateway.wait_for(lambda: 6 in gateway.applied)


def test_snapshot_replaces_the_views(agent: Agent, gateway: FakeGateway) -> None:
    gateway.change("A", view("A"))
    gateway.change("B", view("B"))
    assert _last_seq(agent, 2)
    gateway.change("A", None, send=False)
    gateway.change("C", view("C"), send=False)
    gateway.send_snapshot()
    assert _last_seq(agent, 4)
    assert [s.order_id for s in agent.route()] == ["B", "C"]


def test_resync_behind_a_compacted_log_gets_a_snapshot(
    config: AgentConfig, gateway: FakeGateway
) -> None:
    gateway.change("A", view("A"), send=False)
    gateway.change("B", view("B"), send=False)
    gateway.compact()
    with Agent(config) as agent:
        agent.start()
        assert _last_seq(agent, 2)
        assert [s.order_id for s in agent.route()] == ["A", "B"]


def test_malformed_payload_is_counted_and_the_next_message_applies(
    agent: Agent, gateway: FakeGateway
) -> None:
    inbox = gateway.topics.inbox("tab-07")
    gateway.publish_raw(inbox, b"\xff not json")
    gateway.publish_raw(inbox, b'{"v": 9, "kind": "view_change"}')
    gateway.change("A", view("A"))
    assert _last_seq(agent, 1)
    status = agent.sync_status()
    assert status.codec_errors == 2
    assert status.counters["codec_errors.not-json"] == 1
    assert status.counters["codec_errors.bad-version"] == 1


def test_quiet_stream_triggers_a_resync(
    tmp_path: Path, agent_broker: Broker, gateway: FakeGateway
) -> None:
    config = load_config(write_config(tmp_path, port=agent_broker.port, resync_quiet_s=0.5))
    with Agent(config) as agent:
        agent.start()
        assert agent.wait_online(WAIT)
        assert gateway.wait_for(lambda: 0 in gateway.resyncs)
        gateway.change("A", view("A"), send=False)  # only a later resync can bring it
        assert _last_seq(agent, 1)
        assert gateway.resyncs.count(0) >= 2


def test_gateway_status_gives_source_freshness(agent: Agent, gateway: FakeGateway) -> None:
    legacy = SourceFreshness(source="legacy", as_of=at(-480), cadence_s=86400)
    gateway.publish_status((legacy,))
    assert agent.wait_for(lambda: agent.sync_status().sources == (legacy,), WAIT)
    assert agent.sync_status().gateway_online is True


def test_action_is_sent_and_its_row_removed_only_on_ack(agent: Agent, gateway: FakeGateway) -> None:
    gateway.change("A", view("A"))
    assert _last_seq(agent, 1)
    gateway.auto_ack = False
    event_id = agent.act("deliver", "A", note="left at the back door")
    assert gateway.wait_for(lambda: event_id in gateway.stored)
    assert gateway.stored[event_id].based_on == ("A-a", "A-s")
    assert [i.event_id for i in agent.pending()] == [event_id]
    assert agent.route()[0].status_shown == "delivered (pending)"
    gateway.ack(event_id)
    assert agent.wait_acked(event_id, WAIT)
    assert agent.route()[0].status_shown == "delivered (sent)"
    gateway.change("A", view("A", "delivered"))
    assert _last_seq(agent, 2)
    assert agent.route()[0].status_shown == "delivered"
    assert agent.route()[0].local == ()


def test_action_while_broker_is_down_is_delivered_after_it_returns(
    agent: Agent, gateway: FakeGateway, agent_broker: Broker
) -> None:
    gateway.change("A", view("A"))
    assert _last_seq(agent, 1)
    agent_broker.kill()
    assert agent.wait_for(lambda: not agent.sync_status().online, WAIT)
    event_id = agent.act("fail", "A", reason="nobody home")
    assert agent.sync_status().outbox_size == 1
    assert agent.route()[0].status_shown == "failed (pending)"
    agent_broker.restart()
    assert agent.wait_acked(event_id, WAIT)
    assert list(gateway.stored) == [event_id]
    assert gateway.stored[event_id].reason == "nobody home"


def test_new_agent_on_the_same_db_resumes_and_resends_the_outbox(
    config: AgentConfig, gateway: FakeGateway
) -> None:
    first = Agent(config)
    first.start()
    assert first.wait_online(WAIT)
    gateway.change("A", view("A"))
    gateway.change("B", view("B"))
    assert _last_seq(first, 2)
    gateway.auto_ack = False
    event_id = first.act("arrive", "B")
    assert gateway.wait_for(lambda: event_id in gateway.stored)
    first.stop()
    gateway.auto_ack = True
    gateway.change("C", view("C"), send=False)
    with Agent(config) as second:
        assert second.pending()[0].event_id == event_id
        second.start()
        assert gateway.wait_for(lambda: 2 in gateway.resyncs)
        assert _last_seq(second, 3)
        assert second.wait_acked(event_id, WAIT)
    assert list(gateway.stored) == [event_id]
    assert len(gateway.received) == 2  # sent twice, stored once


def test_birth_and_goodbye_status_are_retained(
    config: AgentConfig, gateway: FakeGateway, agent_broker: Broker
) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    statuses: list[StatusMsg] = []
    got = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        envelope = decode(message.payload)
        assert isinstance(envelope, StatusMsg)
        statuses.append(envelope)
        got.set()

    with Agent(config) as agent:
        agent.start()
        assert agent.wait_online(WAIT)
        gateway.change("A", view("A"))
        assert _last_seq(agent, 1)
    probe = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="probe", protocol=mqtt.MQTTv5)
    probe.on_message = on_message
    probe.connect(agent_broker.host, agent_broker.port)
    probe.subscribe(gateway.topics.device_status("tab-07"), qos=1)
    probe.loop_start()
    try:
        assert got.wait(WAIT)
    finally:
        probe.disconnect()
        probe.loop_stop()
    last = statuses[-1].body
    assert (last.role, last.online, last.last_seq) == ("device", False, 1)


@pytest.fixture
def ticks(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The times every agent's ticker did its work (``Engine.tick``) during the test."""
    out: list[float] = []
    real_tick = Engine.tick

    def counting_tick(self: Engine) -> None:
        out.append(self.clock())
        real_tick(self)

    monkeypatch.setattr(Engine, "tick", counting_tick)
    return out


def test_an_idle_tablet_ticker_sleeps_until_a_message_gives_it_work(
    agent: Agent, gateway: FakeGateway, ticks: list[float]
) -> None:
    gateway.change("A", view("A", sequence=1))
    assert _last_seq(agent, 1)
    assert gateway.wait_for(lambda: 1 in gateway.applied)  # reported within a few ticks
    # the report sent, nothing is pending: the ticker sleeps until the quiet resync (30 s) or
    # the look for actions handed over by `agent act` (HANDOVER_POLL_S, 2 s)
    threading.Event().wait(0.5)
    settled = len(ticks)
    threading.Event().wait(1.5)
    assert len(ticks) - settled <= 1, ticks  # a ticker at TICK_S would have ticked ~6 times
    gateway.change("B", view("B", sequence=2))  # a message wakes it: seq 2 is reported
    assert gateway.wait_for(lambda: 2 in gateway.applied)


def test_a_tablet_taking_a_stream_wakes_when_its_applied_is_due_not_every_tick(
    agent: Agent, gateway: FakeGateway, ticks: list[float]
) -> None:
    gateway.change("A", view("A", sequence=1))
    assert gateway.wait_for(lambda: 1 in gateway.applied)
    settled = len(ticks)
    for k in range(2, 8):  # a message every 0.2 s: each leaves an Applied pending
        gateway.change(f"B{k}", view(f"B{k}", sequence=k))
        threading.Event().wait(0.2)
    assert gateway.wait_for(lambda: 7 in gateway.applied)
    # one tick per report due (APPLIED_EVERY_S apart), not one per TICK_S (~12 by now)
    assert len(ticks) - settled <= 3, ticks


def test_the_gateway_coming_back_online_makes_the_tablet_ask_for_what_it_missed(
    agent: Agent, gateway: FakeGateway
) -> None:
    gateway.publish_status(())
    assert agent.wait_for(lambda: agent.sync_status().gateway_online is True, WAIT)
    asked = len(gateway.resyncs)
    gateway.publish_status((), online=False)  # the gateway's will: it died...
    assert agent.wait_for(lambda: agent.sync_status().gateway_online is False, WAIT)
    gateway.change("A", view("A"), send=False)  # ...with an entry it never sent
    gateway.publish_status(())  # back: the tablet asks at once, not after the quiet timeout
    assert _last_seq(agent, 1)
    assert len(gateway.resyncs) == asked + 1


def test_an_offline_tablet_ticker_does_not_poll(config: AgentConfig, ticks: list[float]) -> None:
    offline = config.model_copy(update={  # quiet resync due at once, were it online
        "broker": config.broker.model_copy(update={"port": 9}),
        "sync": config.sync.model_copy(update={"resync_quiet_s": 0.1})})
    with Agent(offline) as agent:  # nothing listens on port 9: it stays offline
        agent.start()
        threading.Event().wait(1.5)
        assert len(ticks) <= 1, ticks  # a ticker at TICK_S would have ticked ~6 times


def test_a_snapshot_in_parts_replaces_the_route_once_every_part_is_here(
    agent: Agent, gateway: FakeGateway
) -> None:
    gateway.change("A", view("A", sequence=1))
    assert _last_seq(agent, 1)
    gateway.change("A", None, send=False)
    for order_id, n in (("B", 2), ("C", 3), ("D", 4)):
        gateway.change(order_id, view(order_id, sequence=n), send=False)
    gateway.send_snapshot_parts([3, 1])  # two of three parts, out of order
    threading.Event().wait(0.5)
    assert [s.order_id for s in agent.route()] == ["A"]  # never a part of a route
    assert agent.sync_status().last_seq == 1
    assert gateway.send_snapshot_parts([2]) == 3
    assert _last_seq(agent, 5)
    assert [s.order_id for s in agent.route()] == ["B", "C", "D"]


def test_a_snapshot_part_lost_on_the_way_is_asked_for_again(
    agent: Agent, gateway: FakeGateway
) -> None:
    for order_id, n in (("B", 2), ("C", 3)):
        gateway.change(order_id, view(order_id, sequence=n), send=False)
    gateway.compact()  # a resync now gets a (one-part) snapshot
    asked = len(gateway.resyncs)
    gateway.send_snapshot_parts([1])  # part 2 of 2 never comes
    assert _last_seq(agent, 2)  # the tablet asked again (gap retry) and got the snapshot
    assert len(gateway.resyncs) > asked
    assert [s.order_id for s in agent.route()] == ["B", "C"]
