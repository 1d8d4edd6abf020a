"""The Agent without a network: actions, based_on, resolve choices, route overlay, observers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import load_config
from agent.errors import ActionError
from agent.model import Change
from agent.service import Agent
from agent.store import Store
from tests.agent.conftest import _free_port
from tests.agent.factories import RecordingTransport, at, conflicted, view, write_config


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    config = load_config(write_config(tmp_path, port=_free_port()))
    store = Store.open(config.db)
    store.apply_change(1, "A", view("A"), at=at(1))
    store.apply_change(2, "C", conflicted("C"), at=at(2))
    store.close()
    ids = iter(f"ev{n}" for n in range(1, 100))
    with Agent(config, clock=lambda: at(30).timestamp(), new_id=lambda: next(ids)) as a:
        yield a


def test_act_records_based_on_and_overlays_the_route(agent: Agent) -> None:
    changes: list[Change] = []
    agent.subscribe(changes.append)
    assert agent.act("deliver", "A") == "ev1"
    [item] = agent.pending()
    assert item.event.based_on == ("A-a", "A-s")
    assert item.event.at == at(30)
    assert {s.order_id: s.status_shown for s in agent.route()}["A"] == "delivered (pending)"
    assert changes and "route" in changes[0].what


def test_resolve_by_source_name_picks_that_candidate(agent: Agent) -> None:
    agent.act("resolve", "C", field="assignment", choose="optimizer")
    event = agent.pending()[0].event
    assert (event.field, event.choose) == ("assignment", "C-o")
    assert set(event.based_on) == {"C-l", "C-o"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("deliver", "Z"), "not on this tablet's route"),
        (("teleport", "A"), "unknown action"),
        (("resolve", "A"), "needs a field"),
    ],
)
def test_bad_actions_are_refused_and_nothing_is_recorded(
    agent: Agent, args: tuple[str, str], message: str
) -> None:
    with pytest.raises(ActionError, match=message):
        agent.act(*args)
    assert agent.pending() == []


def test_resolve_choice_must_be_a_candidate(agent: Agent) -> None:
    with pytest.raises(ActionError, match="choose one of"):
        agent.act("resolve", "C", field="assignment", choose="dispatch")
    with pytest.raises(ActionError, match="not in conflict"):
        agent.act("resolve", "A", field="status", choose="legacy")


def test_too_long_reason_is_an_action_error(agent: Agent) -> None:
    with pytest.raises(ActionError, match="reason"):
        agent.act("fail", "A", reason="x" * 500)


def test_sync_status_offline(agent: Agent) -> None:
    agent.act("note", "A", note="dog")
    status = agent.sync_status()
    assert (status.online, status.last_seq, status.outbox_size) == (False, 2, 1)
    assert status.last_sync_age_s == pytest.approx(28 * 60)


def test_a_burst_of_entries_is_told_observers_once_at_its_end(agent: Agent) -> None:
    from agent.session import Incoming
    from sync.envelope import ViewChange, ViewChangeMsg

    changes: list[Change] = []
    agent.subscribe(changes.append)
    inbox = agent._topics.inbox(agent.config.device)
    for seq in (3, 4, 5):  # the gateway's head says 5: entries 3 and 4 are mid-burst
        agent.session_message(Incoming(inbox, ViewChangeMsg(
            v=1, kind="view_change", id=f"tab-07:{seq}", origin="gateway",
            hlc="001795830400000-000000-gateway",
            body=ViewChange(seq=seq, order_id=f"B{seq}", view=view(f"B{seq}"), head=5))))
        assert len(changes) == (1 if seq == 5 else 0)
    assert changes[0].what >= {"route", "conflicts", "sync"}
    assert [s.order_id for s in agent.route()] == ["A", "B3", "B4", "B5", "C"]


def test_the_ticker_may_run_before_the_session_is_online(tmp_path: Path) -> None:
    # the transport says "connected" at once: the agent has not heard ``session_online`` yet
    # (paho's network thread tells it a moment later)
    config = load_config(write_config(tmp_path, port=_free_port()))
    transport = RecordingTransport(connected=True)
    with Agent(config, transport=lambda _settings, _agent: transport) as agent:
        agent.start()
        agent._engine.tick()  # was AttributeError: no _applied_dirty before session_online set it
