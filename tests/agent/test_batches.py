"""``view_changes`` on the inbox: a batch judged at once, applied in one transaction (or not at
all), duplicates and gaps counted as one by one; driven through ``Agent.session_message`` with a
transport that only records what the agent publishes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from agent.config import load_config
from agent.model import Change
from agent.service import Agent
from agent.session import Incoming, SessionSettings, Transport
from agent.store import Store
from sync.codec import decode
from sync.envelope import (
    Ack,
    AckMsg,
    ResyncMsg,
    ViewChange,
    ViewChanges,
    ViewChangesMsg,
)
from sync.hlc import Hlc
from sync.model import OrderView
from sync.streams import Receiver
from tests.agent.conftest import _free_port
from tests.agent.factories import RecordingTransport, at, conflicted, view, write_config

HLC = "001795830400000-000000-gateway"


def _agent(tmp_path: Path, transport: RecordingTransport) -> Agent:
    config = load_config(write_config(tmp_path, port=_free_port()))
    store = Store.open(config.db)
    store.apply_change(1, "A", view("A"), at=at(1))
    store.apply_change(2, "C", conflicted("C"), at=at(2))
    store.apply_change(3, "D", view("D"), at=at(3))
    store.close()
    ids = iter(f"ev{n}" for n in range(1, 100))

    def make(_settings: SessionSettings, _agent: Agent) -> Transport:
        return transport

    return Agent(config, clock=lambda: at(30).timestamp(), new_id=lambda: next(ids),
                 transport=make)


@pytest.fixture
def transport() -> RecordingTransport:
    return RecordingTransport()


@pytest.fixture
def agent(tmp_path: Path, transport: RecordingTransport) -> Iterator[Agent]:
    with _agent(tmp_path, transport) as a:
        a.start()
        yield a


def _batch(
    agent: Agent, first: int, changes: list[tuple[str, OrderView | None]], *,
    head: int | None = None,
) -> None:
    entries = tuple(
        ViewChange(seq=first + i, order_id=order_id, view=v)
        for i, (order_id, v) in enumerate(changes)
    )
    agent.session_message(Incoming(agent._topics.inbox(agent.config.device), ViewChangesMsg(
        v=1, kind="view_changes", id=f"tab-07:{first}", origin="gateway", hlc=HLC,
        body=ViewChanges(entries=entries, head=head))))


def _new(*order_ids: str) -> list[tuple[str, OrderView | None]]:
    return [(o, view(o, sequence=n)) for n, o in enumerate(order_ids, start=2)]


def _route(agent: Agent) -> dict[str, str | None]:
    return {s.order_id: s.status_shown for s in agent.route()}


def _resyncs(transport: RecordingTransport) -> list[int]:
    out = []
    for message in transport.sent:
        envelope = decode(message.payload)
        if isinstance(envelope, ResyncMsg):
            out.append(envelope.body.after)
    return out


def _statements(store: Store) -> list[str]:
    """The SQL statements the store's connection runs from now on (until the trace is unset)."""
    statements: list[str] = []
    store._db.conn.set_trace_callback(statements.append)
    return statements


def test_a_batch_is_applied_in_one_transaction_and_told_observers_once(agent: Agent) -> None:
    changes: list[Change] = []
    agent.subscribe(changes.append)
    statements = _statements(agent._store)
    _batch(agent, 4, _new("B4", "B5", "B6", "B7"), head=7)
    agent._store._db.conn.set_trace_callback(None)
    assert statements.count("COMMIT") == 1
    assert [s.order_id for s in agent.route()] == ["A", "D", "B4", "B5", "B6", "B7", "C"]
    assert agent.sync_status().last_seq == 7
    assert agent._store.receiver() == Receiver(last=7)
    assert len(changes) == 1 and changes[0].what >= {"route", "conflicts", "sync"}
    assert agent._store.hlc("tab-07") > Hlc.parse(HLC)  # the batch's stamp, observed


def test_a_batch_short_of_its_head_is_told_observers_with_the_next(agent: Agent) -> None:
    changes: list[Change] = []
    agent.subscribe(changes.append)
    _batch(agent, 4, _new("B4", "B5"), head=7)
    assert changes == [] and agent._engine.state.behind
    _batch(agent, 6, _new("B6", "B7"), head=7)
    assert len(changes) == 1 and not agent._engine.state.behind


def test_a_burst_is_told_observers_once_though_its_first_message_wakes_the_ticker(
    agent: Agent
) -> None:
    # the first message makes work pending and wakes the sleeping ticker: that may shorten its
    # sleep to TICK_S, not tell observers at once (per message, in a burst of many)
    agent._engine.timing = replace(agent._engine.timing, tick_s=5.0)
    changes: list[Change] = []
    agent.subscribe(changes.append)
    _batch(agent, 4, _new("B4", "B5"), head=7)
    threading.Event().wait(0.3)  # the woken ticker had time to look
    assert changes == []
    _batch(agent, 6, _new("B6", "B7"), head=7)
    assert len(changes) == 1


def test_a_burst_whose_tail_never_comes_is_told_observers_by_the_ticker(agent: Agent) -> None:
    changes: list[Change] = []
    agent.subscribe(changes.append)
    _batch(agent, 4, _new("B4", "B5"), head=7)
    assert agent.wait_for(lambda: len(changes) == 1, 2.0)


def test_a_batch_overlapping_applied_entries_applies_the_rest_and_counts_duplicates(
    agent: Agent,
) -> None:
    # entries 2 and 3 were applied before; the batch's copies of them must not be written
    _batch(agent, 2, [("X2", view("X2")), ("X3", view("X3")), *_new("B4", "B5")], head=5)
    assert [s.order_id for s in agent.route()] == ["A", "D", "B4", "B5", "C"]
    status = agent.sync_status()
    assert status.last_seq == 5
    assert status.counters.get("duplicates") == 2


def test_a_batch_of_applied_entries_only_counts_each_as_a_duplicate(agent: Agent) -> None:
    before = agent.route()
    _batch(agent, 1, [("X1", None), ("X2", None), ("X3", None)])
    assert agent.route() == before
    assert agent.sync_status().counters.get("duplicates") == 3
    assert agent.sync_status().last_seq == 3


def test_a_batch_after_a_gap_asks_for_resync_once_and_applies_nothing(
    agent: Agent, transport: RecordingTransport
) -> None:
    before = agent.route()
    _batch(agent, 6, _new("B6", "B7", "B8"), head=8)
    _batch(agent, 9, _new("B9"), head=9)
    assert agent.route() == before
    assert _resyncs(transport) == [3]
    status = agent.sync_status()
    assert status.last_seq == 3 and status.counters.get("gaps") == 4  # as one by one
    assert agent._engine.state.behind
    _batch(agent, 4, _new("B4", "B5", "B6", "B7", "B8", "B9"), head=9)  # the replay
    assert agent.sync_status().last_seq == 9
    assert len(agent.route()) == 9 and not agent._engine.state.behind


def test_a_batch_mixes_views_and_removals_in_stream_order(agent: Agent) -> None:
    _batch(agent, 4, [
        ("A", None),                       # removed
        ("B", view("B", sequence=2)),      # added, then removed below
        ("D", None),                       # removed, then back below
        ("B", None),
        ("D", view("D", "loaded", sequence=3)),
        ("C", view("C", "loaded", sequence=4)),  # its conflict resolved
    ])
    assert _route(agent) == {"D": "loaded", "C": "loaded"}
    assert agent.conflicts() == []
    assert agent.sync_status().last_seq == 9


def test_a_batch_drops_acked_local_actions_and_keeps_pending_ones_as_apply_change(
    agent: Agent,
) -> None:
    pending = agent.act("deliver", "A")
    acked = agent.act("arrive", "C")
    untouched = agent.act("fail", "D", reason="closed")
    agent.session_message(Incoming(agent._topics.acks(agent.config.device), AckMsg(
        v=1, kind="ack", id="ack-1", origin="gateway", hlc=HLC,
        body=Ack(event_ids=(acked, untouched)))))
    assert _route(agent) == {"A": "delivered (pending)", "C": "arrived (sent)",
                             "D": "failed (sent)"}
    _batch(agent, 4, [("A", view("A", sequence=1)), ("C", view("C", sequence=2)), *_new("B")])
    # C's acked action is reflected by its new view; A's is still pending; D got no view
    assert _route(agent) == {"A": "delivered (pending)", "C": "planned", "D": "failed (sent)",
                             "B": "planned"}
    assert [a.event_id for a in agent._store.local_actions()] == [pending, untouched]
    agent.session_message(Incoming(agent._topics.acks(agent.config.device), AckMsg(
        v=1, kind="ack", id="ack-2", origin="gateway", hlc=HLC, body=Ack(event_ids=(pending,)))))
    # A's action was acked after a later view of A arrived: the overlay goes at once
    assert [a.event_id for a in agent._store.local_actions()] == [untouched]
