"""Revoke, rotate and bind a tablet against a real Mosquitto run by the gateway: a revoked
tablet is dropped at once, cannot log in again, loses its persistent session, and whatever it
still sends is refused and counted; a rotated one's old credential stops working; a re-bound
one loses the old route and its unacknowledged actions still count. Each with the control
that the same path works for the rightful identity."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import load_config as load_agent_config
from agent.service import Agent
from gateway.store.core import Store
from gateway.store.devices import DeviceStore
from sync.topics import Topics
from tests.broker import WAIT, MqttProbe, connect_reason
from tests.security.depot import DEPOT, SecureDepot, Tablet
from tests.system.depot import wait_for

pytestmark = pytest.mark.broker

TOPICS = Topics(DEPOT)
SESSION = 3600


def _event(device: str, event_id: str, order_id: str) -> bytes:
    now = dt.datetime.now(dt.UTC)
    return json.dumps({
        "v": 1, "kind": "driver_event", "id": event_id, "origin": device,
        "hlc": f"{int(now.timestamp() * 1000):015d}-000000-{device}",
        "body": {"event_id": event_id, "order_id": order_id, "action": "arrive",
                 "at": now.isoformat()}}).encode()


def _persistent(depot: SecureDepot, tablet: Tablet, password: str | None = None) -> MqttProbe:
    return MqttProbe.connect(depot.broker, tablet.username, username=tablet.username,
                             password=password or tablet.password, clean_start=False,
                             session_expiry=SESSION)


def _store(depot: SecureDepot) -> Store:
    return Store(depot.cfg.db_path)


def _counters(depot: SecureDepot) -> dict[str, int]:
    with _store(depot) as store:
        return DeviceStore(store).counters()


def test_a_revoked_tablet_is_dropped_refused_and_loses_its_session(
        secure_depot: SecureDepot) -> None:
    tablet = secure_depot.add("tab-a", "DRV-001")
    runner = secure_depot.start()
    order = None
    with _store(secure_depot) as store:
        order = DeviceStore(store).route("DRV-001")[0]
    with _persistent(secure_depot, tablet) as first:  # control: its session persists
        first.subscribe(TOPICS.inbox(tablet.device))
    live = _persistent(secure_depot, tablet)
    assert live.session_present
    out = secure_depot.cli("gateway", "devices", "revoke", "tab-a",
                           "--config", str(secure_depot.config))
    assert "revoked" in out
    # revoked in the store, not yet dropped by the broker: what it sends now is refused, counted
    live.publish(TOPICS.outbox(tablet.device), _event(tablet.device, "ev-late", order))
    assert wait_for(lambda: _counters(secure_depot).get("revoked_messages", 0) == 1, WAIT)
    runner.check()  # what SIGUSR1 from the command makes a running `gateway run` do at once
    try:
        assert live.disconnected.wait(WAIT)  # the live connection is dropped
    finally:
        live.close()
    assert connect_reason(secure_depot.broker, "x", username=tablet.username,
                          password=tablet.password).is_failure
    with _store(secure_depot) as store:
        assert DeviceStore(store).event_outcome(tablet.device, "ev-late") is None
        audit = [a for a in store.audit_log() if a["action"] == "device-revoke"]
    assert audit and audit[0]["actor"] == f"cli:{getpass.getuser()}"
    listed = json.loads(secure_depot.cli("gateway", "devices", "list", "--json",
                                         "--config", str(secure_depot.config)))
    assert [(d["device"], d["state"]) for d in listed] == [("tab-a", "revoked")]
    # its session is gone: given a credential again, it starts without one
    secure_depot.cli("gateway", "devices", "rotate", "tab-a", "--agent-config",
                     str(tablet.config), "--config", str(secure_depot.config))
    runner.check()
    again = secure_depot.tablet("tab-a", "DRV-001")
    with _persistent(secure_depot, again) as back:
        assert not back.session_present


def test_rotate_makes_the_old_credential_fail_and_the_new_one_work(
        secure_depot: SecureDepot) -> None:
    tablet = secure_depot.add("tab-a", "DRV-001")
    runner = secure_depot.start()
    live = secure_depot.login(tablet)
    secure_depot.cli("gateway", "devices", "rotate", "tab-a", "--agent-config",
                     str(tablet.config), "--config", str(secure_depot.config))
    runner.check()
    try:
        assert live.disconnected.wait(WAIT)
    finally:
        live.close()
    new = secure_depot.tablet("tab-a", "DRV-001")
    assert new.password != tablet.password
    assert connect_reason(secure_depot.broker, "x", username=tablet.username,
                          password=tablet.password).is_failure
    with secure_depot.login(new) as probe:  # control: the new file logs in
        assert not probe.subscribe(TOPICS.acks("tab-a")).is_failure


def test_bind_moves_the_route_and_unacked_actions_still_count(secure_depot: SecureDepot
                                                             ) -> None:
    tablet = secure_depot.add("tab-a", "DRV-001")
    runner = secure_depot.start()
    with tablet.config.open("a", encoding="utf-8") as fh:
        fh.write("\n[sync]\nresync_quiet_s = 1\nbackoff_min_s = 0.1\nbackoff_max_s = 1\n")
    config = load_agent_config(tablet.config)
    with _store(secure_depot) as store:
        old_route = DeviceStore(store).route("DRV-001")
        new_route = DeviceStore(store).route("DRV-002")
    agent = Agent(config)
    agent.start()
    try:
        assert agent.wait_for(lambda: {s.order_id for s in agent.route()} == set(old_route), 15)
    finally:
        agent.stop()
    offline = Agent(config)  # offline: the action waits in the outbox
    event_id = offline.act("arrive", old_route[0])
    offline.stop()
    secure_depot.cli("gateway", "devices", "bind", "tab-a", "--driver", "DRV-002",
                     "--config", str(secure_depot.config))
    runner.check()
    agent = Agent(config)
    agent.start()
    try:
        assert agent.wait_for(lambda: not agent.pending(), 15)  # sent and acked...
        assert agent.wait_for(lambda: {s.order_id for s in agent.route()} == set(new_route),
                              15)  # ...and the old route has left the tablet
    finally:
        agent.stop()
    with _store(secure_depot) as store:
        assert DeviceStore(store).event_outcome("tab-a", event_id) == "applied"
        view = store.view(old_route[0])
        audit = [a for a in store.audit_log() if a["action"] == "device-bind"]
    assert view is not None
    assert "arrived" in [c.value for c in view.fields["status"].candidates if c.source == "driver"]
    assert audit and audit[0]["actor"].startswith("cli:")
    listed = json.loads(secure_depot.cli("gateway", "devices", "list", "--json",
                                         "--config", str(secure_depot.config)))
    assert (listed[0]["driver"], listed[0]["previous_driver"]) == ("DRV-002", "DRV-001")


@pytest.mark.slow
def test_revoke_takes_effect_at_once_on_a_running_gateway_run(secure_depot: SecureDepot,
                                                              tmp_path: Path) -> None:
    tablet = secure_depot.add("tab-a", "DRV-001")
    err = tmp_path / "run.err"
    with err.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "crossdock_cli", "gateway", "run",
                                 "--no-scheduler", "--config", str(secure_depot.config)],
                                stdout=subprocess.DEVNULL, stderr=fh, start_new_session=True)
    try:
        pid_file = secure_depot.root / "gateway.pid"
        import time

        deadline = time.monotonic() + 30
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pid_file.exists(), err.read_text()
        host, port = secure_depot.cfg.broker.address
        probe = MqttProbe(tablet.username)
        reason = probe.start(_Where(host, port), username=tablet.username,  # type: ignore[arg-type]
                             password=tablet.password)
        assert not reason.is_failure  # control: it logs in before
        out = subprocess.run([sys.executable, "-m", "crossdock_cli", "gateway", "devices",
                              "revoke", "tab-a", "--config", str(secure_depot.config)],
                             capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        assert f"the running gateway (pid {proc.pid}) applies it now" in out.stdout
        try:
            assert probe.disconnected.wait(10)  # no 5 s check interval to wait for
        finally:
            probe.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    assert not pid_file.exists()


class _Where:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
