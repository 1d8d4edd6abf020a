"""``crossdock agent state|act|run`` through click's CliRunner and as real processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli import agent as agent_cli
from agent.config import load_config
from agent.errors import ConfigError
from agent.store import Store
from sync.envelope import SourceFreshness, Status
from tests.agent.conftest import Broker, _free_port
from tests.agent.dying import DIE_BEFORE_PUBLISH
from tests.agent.factories import at, conflicted, view, write_config
from tests.agent.fakegw import WAIT, FakeGateway

_RUN = "from agent.cli import agent; agent(prog_name='crossdock agent')"
"""``crossdock agent`` without the root CLI, so other parts' imports cannot affect the test."""


def _seed(config_path: Path) -> None:
    store = Store.open(load_config(config_path).db)
    try:
        store.apply_change(1, "A", view("A", sequence=1), at=at(2))
        store.apply_change(2, "C", conflicted("C", sequence=2), at=at(7))
        legacy = SourceFreshness(source="legacy", as_of=at(-480), cadence_s=86400)
        status = Status(role="gateway", online=True, at=at(8), sources=(legacy,))
        store.save_gateway_status(status, at=at(8))
    finally:
        store.close()


def test_state_json_reads_the_store_without_connecting(tmp_path: Path) -> None:
    config_path = write_config(tmp_path, port=_free_port())
    _seed(config_path)
    result = CliRunner().invoke(agent_cli, ["state", "--config", str(config_path), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["last_seq"] == 2
    assert [s["order_id"] for s in doc["route"]] == ["A", "C"]
    assert doc["route"][1]["conflicts"] == ["assignment"]
    [conflict] = doc["conflicts"]
    assert {"order_id", "field", "opened_at", "candidates"} <= set(conflict)
    assert {c["source"] for c in conflict["candidates"]} == {"legacy", "optimizer"}
    assert all(
        {"source", "value", "as_of", "claim_id", "age_s"} <= set(c) for c in conflict["candidates"]
    )
    assert doc["freshness"][0]["source"] == "legacy"
    assert doc["outbox"] == []
    assert doc["sync"]["online"] is False


def test_state_text_shows_conflict_sides_and_outbox(tmp_path: Path) -> None:
    config_path = write_config(tmp_path, port=_free_port())
    _seed(config_path)
    runner = CliRunner()
    act = runner.invoke(
        agent_cli, ["act", "--config", str(config_path), "deliver", "A", "--wait", "0"]
    )
    assert act.exit_code == 0, act.output
    result = runner.invoke(agent_cli, ["state", "--config", str(config_path)])
    assert result.exit_code == 0, result.output
    assert "delivered (pending)" in result.output
    assert "CONFLICT: assignment" in result.output
    assert "optimizer" in result.output and "[C-o]" in result.output
    assert "Outbox (1 waiting" in result.output
    assert result.output.count("times in ") == 1  # the zone, said once (issue 10)


def test_act_offline_exits_0_and_queues(tmp_path: Path) -> None:
    config_path = write_config(tmp_path, port=_free_port())  # nobody listens there
    _seed(config_path)
    result = CliRunner().invoke(
        agent_cli,
        ["act", "--config", str(config_path), "fail", "A", "--reason", "closed", "--wait", "0.5"],
    )
    assert result.exit_code == 0, result.output
    assert "queued offline: will send on reconnect" in result.output
    store = Store.open(load_config(config_path).db)
    try:
        [item] = store.pending()
        assert (item.event.action, item.event.reason) == ("fail", "closed")
    finally:
        store.close()


def test_act_on_unknown_order_is_a_one_line_error(tmp_path: Path) -> None:
    config_path = write_config(tmp_path, port=_free_port())
    result = CliRunner().invoke(
        agent_cli, ["act", "--config", str(config_path), "deliver", "NOPE", "--wait", "0"]
    )
    assert result.exit_code == 1
    assert "NOPE is not on this tablet's route" in str(result.exception)


def test_missing_config_names_the_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(agent_cli, ["state", "--config", str(tmp_path / "no.toml")])
    assert isinstance(result.exception, ConfigError)
    assert "no.toml" in str(result.exception)


@pytest.mark.broker
def test_act_online_waits_for_the_ack(
    tmp_path: Path, agent_broker: Broker, gateway: FakeGateway
) -> None:
    config_path = write_config(tmp_path, port=agent_broker.port)
    _seed(config_path)
    result = CliRunner().invoke(
        agent_cli, ["act", "--config", str(config_path), "arrive", "A", "--wait", "4"]
    )
    assert result.exit_code == 0, result.output
    assert "acknowledged by the gateway" in result.output
    assert [e.action for e in gateway.stored.values()] == ["arrive"]


@pytest.mark.broker
def test_sigkill_after_recording_delivers_the_event_exactly_once_after_restart(
    tmp_path: Path, agent_broker: Broker, gateway: FakeGateway
) -> None:
    config_path = write_config(tmp_path, port=agent_broker.port)
    gateway.change("A", view("A"), send=False)  # the agent gets it by resync on connect
    died = subprocess.run(
        [sys.executable, "-c", DIE_BEFORE_PUBLISH, str(config_path), "A"],
        capture_output=True,
        timeout=20,
        check=False,
    )
    assert died.returncode == -signal.SIGKILL, died.stderr.decode()
    assert gateway.received == []  # it never went out
    run = subprocess.Popen(
        [sys.executable, "-c", _RUN, "run", "--config", str(config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    store = Store.open(load_config(config_path).db)
    try:
        assert gateway.wait_for(lambda: len(gateway.stored) == 1, WAIT + 4)
        # the gateway's ack is in flight when it stores: the outbox empties when it arrives
        assert gateway.wait_for(lambda: store.pending() == [], WAIT)
    finally:
        run.send_signal(signal.SIGTERM)
        _out, err = run.communicate(timeout=10)
        store.close()
    assert run.returncode == 0, err.decode()
    assert len(gateway.received) == 1
    [event] = gateway.stored.values()
    assert (event.action, event.order_id) == ("deliver", "A")
