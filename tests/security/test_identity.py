"""A client id belongs to its user: a tablet connecting with the gateway's or another tablet's
client id does not kick them off the broker (Mosquitto's ``use_username_as_clientid``).

Each attack has its positive control: the victim's own connection works before and after, and
the attacker's connection itself succeeds (so the test is not passing on a refused login)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from agent.config import load_config
from agent.service import Agent
from crossdock_cli import cli as main
from sync.topics import Topics
from tests.broker import MqttProbe
from tests.security.depot import DEPOT, SecureDepot, Tablet

pytestmark = pytest.mark.broker

TOPICS = Topics(DEPOT)


def _gateway_online(probe: MqttProbe) -> bool:
    """The retained gateway/status as a fresh subscriber sees it now."""
    probe.subscribe(TOPICS.gateway_status)
    message = probe.get()
    assert message is not None, "no retained gateway/status"
    return bool(json.loads(message.payload)["body"]["online"])


def _stays_connected(probe: MqttProbe, seconds: float = 1.5) -> bool:
    """True if ``probe`` is not disconnected within ``seconds`` (a takeover is immediate)."""
    return not probe.disconnected.wait(seconds)


def test_a_tablet_with_the_gateways_client_id_does_not_kick_the_gateway(
        secure_depot: SecureDepot) -> None:
    thief = secure_depot.add("tab-a", "DRV-001")
    runner = secure_depot.start()
    assert runner.service is not None
    link = runner.service.link
    with secure_depot.login(thief, "observer-a") as observer:
        assert _gateway_online(observer)  # control: the gateway is up and says so
    before = link.disconnects
    gateway_id = f"crossdock-gateway-{DEPOT}"
    with secure_depot.login(thief, gateway_id) as attacker:  # the login itself succeeds
        assert attacker.connected.is_set()
        assert _stays_connected(attacker)  # nobody kicks it back either
    assert link.disconnects == before
    assert link.connected.is_set()
    with secure_depot.login(thief, "observer-b") as observer:
        assert _gateway_online(observer)


def test_a_tablet_with_another_tablets_client_id_does_not_kick_it(
        secure_depot: SecureDepot) -> None:
    victim = secure_depot.add("tab-a", "DRV-001")
    thief = secure_depot.add("tab-b", "DRV-002")
    secure_depot.start()
    with secure_depot.login(victim, f"crossdock-{victim.device}") as own:
        assert own.subscribe(TOPICS.acks(victim.device)).value < 0x80  # control: it works
        for client_id in (f"crossdock-{victim.device}", victim.username):
            with secure_depot.login(thief, client_id) as attacker:
                assert attacker.connected.is_set()
                assert _stays_connected(own)


def test_the_same_identity_still_takes_over_its_own_session(secure_depot: SecureDepot) -> None:
    """Control for the two above: takeover itself still works, within one identity (a tablet
    that reconnects after a network change replaces its stale connection)."""
    tablet = secure_depot.add("tab-a", "DRV-001")
    secure_depot.start()
    with secure_depot.login(tablet, "first") as first, secure_depot.login(tablet, "second"):
        assert first.disconnected.wait(3)


def _running_agent(depot: SecureDepot, tablet: Tablet) -> Agent:
    with tablet.config.open("a", encoding="utf-8") as fh:
        fh.write("\n[sync]\nresync_quiet_s = 1\nbackoff_min_s = 0.1\nbackoff_max_s = 1\n")
    agent = Agent(load_config(tablet.config))
    agent.start()
    assert agent.wait_online(10)
    assert agent.wait_for(lambda: bool(agent.route()), 10)
    return agent


def test_agent_act_beside_a_running_agent_hands_it_the_action(secure_depot: SecureDepot
                                                              ) -> None:
    """One identity, one connection: ``agent act`` does not replace a running agent's
    connection; it records the action and the running agent sends it."""
    tablet = secure_depot.add("tab-a", "DRV-001")
    secure_depot.start()
    running = _running_agent(secure_depot, tablet)
    try:
        order = running.route()[0].order_id
        offline_before = running.sync_status().online
        result = CliRunner().invoke(main, ["agent", "act", "--config", str(tablet.config),
                                           "arrive", order, "--wait", "10"])
        assert result.exit_code == 0, result.output
        assert "handed to the running agent for this tablet: acknowledged" in result.output
        assert offline_before and running.sync_status().online
        assert running.wait_for(lambda: not running.pending(), 15)  # sent by it, and acked
    finally:
        running.stop()


def test_agent_act_alone_connects_and_is_acked(secure_depot: SecureDepot) -> None:
    """Control: with no agent running, ``agent act`` sends the action itself."""
    tablet = secure_depot.add("tab-a", "DRV-001")
    secure_depot.start()
    running = _running_agent(secure_depot, tablet)
    order = running.route()[0].order_id
    running.stop()
    result = CliRunner().invoke(main, ["agent", "act", "--config", str(tablet.config),
                                       "arrive", order, "--wait", "10"])
    assert result.exit_code == 0, result.output
    assert "acknowledged by the gateway" in result.output
