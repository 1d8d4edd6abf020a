"""A reconnect resends the outbox REPLAY_WINDOW rows at a time, more as acks come back: a
tablet back from days offline does not send thousands of actions in one burst."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from agent.config import load_config
from agent.service import REPLAY_WINDOW, Agent
from agent.session import Incoming, Outgoing, SessionSettings, Transport
from agent.store import Store
from sync.envelope import Ack, AckMsg, Refusal
from sync.topics import Topics
from tests.agent.factories import RecordingTransport, at, view, write_config
from tests.broker import free_port


@dataclass
class Replaying:
    """A tablet just back online with REPLAY_WINDOW + 30 notes in its outbox (``recorded``,
    oldest first), the first window sent and forgotten by ``transport``."""

    tablet: Agent
    transport: RecordingTransport
    topics: Topics
    recorded: list[str]

    def ack(self, body: Ack) -> list[Outgoing]:
        """The gateway's ack arrives; what the tablet sent on its outbox in answer."""
        self.transport.sent.clear()
        device = self.tablet.config.device
        self.tablet.session_message(Incoming(self.topics.acks(device), AckMsg(
            v=1, kind="ack", id="a", origin="gateway", hlc="001795777200000-000000-gateway",
            body=body)))
        return [m for m in self.transport.sent if m.topic == self.topics.outbox(device)]


@contextmanager
def replaying(tmp_path: Path) -> Iterator[tuple[Replaying, list[Outgoing]]]:
    """The tablet of ``Replaying`` and what it sent on its outbox when it came online."""
    config = load_config(write_config(tmp_path, port=free_port()))
    store = Store.open(config.db)
    store.apply_change(1, "A", view("A"), at=at(1))
    store.close()
    ids = iter(f"ev{n:04d}" for n in range(10_000))
    transport = RecordingTransport()

    def make(_settings: SessionSettings, _agent: Agent) -> Transport:
        return transport

    topics = Topics(config.depot)
    with Agent(config, clock=lambda: at(30).timestamp(), new_id=lambda: next(ids),
               transport=make) as tablet:
        recorded = [tablet.act("note", "A", note=str(n)) for n in range(REPLAY_WINDOW + 30)]
        tablet.start()  # offline until the session says so
        transport.sent.clear()
        transport.connected = True
        tablet.session_online()
        sent = [m for m in transport.sent
                if m.topic == topics.outbox(config.device) and b"driver_event" in m.payload]
        yield Replaying(tablet, transport, topics, recorded), sent


def test_a_reconnect_replays_the_outbox_a_window_at_a_time(tmp_path: Path) -> None:
    with replaying(tmp_path) as (replay, sent):
        assert len(sent) == REPLAY_WINDOW  # not all 130 at once
        more = replay.ack(Ack(event_ids=tuple(replay.recorded[:10])))
        assert len(more) == 10  # each ack makes room for one more
        assert [i.event_id for i in replay.tablet.pending()] == replay.recorded[10:]  # kept


def test_a_refusal_makes_room_in_the_replay_window_as_an_ack_does(tmp_path: Path) -> None:
    with replaying(tmp_path) as (replay, _sent):
        recorded = replay.recorded
        more = replay.ack(Ack(event_ids=tuple(recorded[:3]), refused=tuple(
            Refusal(event_id=e, reason="order A is not on driver 7's route")
            for e in recorded[3:7])))
        assert len(more) == 7  # 3 acked and 4 refused: room for 7 more
        assert all(e.encode() in m.payload for e, m in zip(
            recorded[REPLAY_WINDOW:REPLAY_WINDOW + 7], more, strict=True))  # the next 7
        assert [r.event_id for r in replay.tablet.refused()] == recorded[3:7]
        assert [i.event_id for i in replay.tablet.pending()] == recorded[7:]  # nothing lost
