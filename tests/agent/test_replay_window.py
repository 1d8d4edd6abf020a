"""A reconnect resends the outbox REPLAY_WINDOW rows at a time, more as acks come back: a
tablet back from days offline does not send thousands of actions in one burst."""

from __future__ import annotations

import socket
from pathlib import Path

from agent.config import load_config
from agent.service import REPLAY_WINDOW, Agent
from agent.session import Incoming, SessionSettings, Transport
from agent.store import Store
from sync.envelope import Ack, AckMsg, Refusal
from sync.topics import Topics
from tests.agent.factories import RecordingTransport, at, view, write_config


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_reconnect_replays_the_outbox_a_window_at_a_time(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, port=_port()))
    store = Store.open(config.db)
    store.apply_change(1, "A", view("A"), at=at(1))
    store.close()
    ids = iter(f"ev{n:04d}" for n in range(10_000))
    transport = RecordingTransport()

    def make(_settings: SessionSettings, _agent: Agent) -> Transport:
        return transport

    topics = Topics(config.depot)
    outbox = topics.outbox(config.device)
    with Agent(config, clock=lambda: at(30).timestamp(), new_id=lambda: next(ids),
               transport=make) as tablet:
        recorded = [tablet.act("note", "A", note=str(n)) for n in range(REPLAY_WINDOW + 30)]
        tablet.start()  # offline until the session says so
        transport.sent.clear()
        transport.connected = True
        tablet.session_online()
        sent = [m for m in transport.sent if m.topic == outbox and b"driver_event" in m.payload]
        assert len(sent) == REPLAY_WINDOW  # not all 130 at once
        transport.sent.clear()
        tablet.session_message(Incoming(topics.acks(config.device), AckMsg(
            v=1, kind="ack", id="a", origin="gateway", hlc="001795777200000-000000-gateway",
            body=Ack(event_ids=tuple(recorded[:10])))))
        more = [m for m in transport.sent if m.topic == outbox]
        assert len(more) == 10  # each ack makes room for one more
        assert [i.event_id for i in tablet.pending()] == recorded[10:]  # nothing lost


def test_a_refusal_makes_room_in_the_replay_window_as_an_ack_does(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, port=_port()))
    store = Store.open(config.db)
    store.apply_change(1, "A", view("A"), at=at(1))
    store.close()
    ids = iter(f"ev{n:04d}" for n in range(10_000))
    transport = RecordingTransport()

    def make(_settings: SessionSettings, _agent: Agent) -> Transport:
        return transport

    topics = Topics(config.depot)
    outbox = topics.outbox(config.device)
    with Agent(config, clock=lambda: at(30).timestamp(), new_id=lambda: next(ids),
               transport=make) as tablet:
        recorded = [tablet.act("note", "A", note=str(n)) for n in range(REPLAY_WINDOW + 30)]
        tablet.start()
        transport.sent.clear()
        transport.connected = True
        tablet.session_online()
        transport.sent.clear()
        tablet.session_message(Incoming(topics.acks(config.device), AckMsg(
            v=1, kind="ack", id="a", origin="gateway", hlc="001795777200000-000000-gateway",
            body=Ack(event_ids=tuple(recorded[:3]), refused=tuple(
                Refusal(event_id=e, reason="order A is not on driver 7's route")
                for e in recorded[3:7])))))
        more = [m for m in transport.sent if m.topic == outbox]
        assert len(more) == 7  # 3 acked and 4 refused: room for 7 more
        assert all(e.encode() in m.payload for e, m in zip(
            recorded[REPLAY_WINDOW:REPLAY_WINDOW + 7], more, strict=True))  # the next 7
        assert [r.event_id for r in tablet.refused()] == recorded[3:7]
        assert [i.event_id for i in tablet.pending()] == recorded[7:]  # nothing lost
