"""A depot set up and run only through the `crossdock` command, as an operator would:
sample → devices add (writes the tablet's file) → gateway run (managed Mosquitto with
passwords and ACL) → agent run → dispatch, with the refusals' exit codes; and the same with
TLS turned on (tls-cert → [broker] lines → the tablet syncs over the TLS listener)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.broker import free_port

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def crossdock(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crossdock_cli", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


def spawn(log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:
        return subprocess.Popen([sys.executable, "-m", "crossdock_cli", *args],
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)


def until(fn, timeout: float = 45.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.25)
    return fn()


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def sample(tmp_path: Path, *, orders: int, drivers: int) -> Path:
    """``gateway sample`` into tmp_path/depot, its broker on a free port; its gateway.toml."""
    depot = tmp_path / "depot"
    made = crossdock("gateway", "sample", "--out", str(depot), "--orders", str(orders),
                     "--drivers", str(drivers), "--port", str(free_port()))
    assert made.returncode == 0, made.stderr
    return depot / "gateway.toml"


def route(tablet: Path) -> list[dict]:
    """The tablet's route as `agent state --json` shows it; empty until it has one."""
    proc = crossdock("agent", "state", "--config", str(tablet), "--json")
    return json.loads(proc.stdout)["route"] if proc.returncode == 0 else []


def test_operator_sets_up_a_tablet_and_dispatches_through_the_cli(tmp_path: Path):
    depot = sample(tmp_path, orders=30, drivers=5).parent
    config = str(depot / "gateway.toml")
    ingest = crossdock("gateway", "ingest", "--config", config, "--json")
    assert ingest.returncode == 0, ingest.stderr
    tablet = tmp_path / "tab-1.toml"
    added = crossdock("gateway", "devices", "add", "tab-1", "--driver", "DRV-001",
                      "--agent-config", str(tablet), "--config", config)
    assert added.returncode == 0, added.stderr
    assert "password" in tablet.read_text()

    gateway_log, agent_log = tmp_path / "gateway.log", tmp_path / "agent.log"
    gateway = spawn(gateway_log, "gateway", "run", "--config", config, "--no-scheduler")
    agent = spawn(agent_log, "agent", "run", "--config", str(tablet))
    try:
        stops = until(lambda: route(tablet))
        assert stops, f"tablet got no route; gateway said: {gateway_log.read_text()[-800:]}"
        order = stops[0]["order_id"]

        refused = crossdock("dispatch", "--config", str(depot / "dispatch.toml"), "assign",
                            order, "DRV-404")
        assert refused.returncode == 1
        assert refused.stderr.strip() == "crossdock: refused: unknown driver DRV-404"

        ok = crossdock("dispatch", "--config", str(depot / "dispatch.toml"), "cancel", order,
                       "--reason", "customer called")
        assert ok.returncode == 0, ok.stderr

        def status_conflict() -> bool:
            return any(s["order_id"] == order and "status" in s["conflicts"]
                       for s in route(tablet))

        assert until(status_conflict)
        listed = json.loads(crossdock("gateway", "conflicts", "--config", config,
                                      "--json").stdout)
        assert any(c["order_id"] == order and c["field"] == "status" for c in listed)
        devices = json.loads(crossdock("gateway", "devices", "list", "--config", config,
                                       "--json").stdout)
        assert devices[0]["device"] == "tab-1" and devices[0]["last_seq"] >= 2
    finally:
        stop(agent)
        stop(gateway)
    assert gateway.returncode in (0, -signal.SIGTERM), gateway_log.read_text()[-800:]
    assert "Traceback" not in gateway_log.read_text()
    assert "Traceback" not in agent_log.read_text()


def test_gateway_run_reads_each_source_at_start_not_first_at_its_cron_time(tmp_path: Path):
    config = str(sample(tmp_path, orders=20, drivers=3))
    log = tmp_path / "gateway.log"
    gateway = spawn(log, "gateway", "run", "--config", config)
    try:
        def last_run() -> str | None:
            proc = crossdock("gateway", "sources", "--config", config, "--json")
            rows = json.loads(proc.stdout) if proc.returncode == 0 else []
            return rows[0]["last_run_status"] if rows else None

        assert until(last_run) == "ok", log.read_text()[-800:]
    finally:
        stop(gateway)
    assert "Traceback" not in log.read_text()


def test_operator_turns_on_tls_and_a_tablet_syncs_over_it(tmp_path: Path):
    config = sample(tmp_path, orders=20, drivers=2)  # 6 dirty on purpose: 10 would be degraded
    depot, tls_port = config.parent, free_port()
    made = crossdock("gateway", "tls-cert", "--config", str(config), "--host", "localhost",
                     "--host", "127.0.0.1", "--port", str(tls_port), "--days", "2")
    assert made.returncode == 0, made.stderr
    assert (depot / "broker-key.pem").stat().st_mode & 0o777 == 0o600
    # the operator pastes the printed lines into [broker]; tls-cert itself leaves the file be
    lines = [line for line in made.stdout.splitlines() if " = " in line]
    assert [line.split(" = ")[0] for line in lines] == [
        "tls_port", "tls_host", "certfile", "keyfile", "public_host", "ca_file"]
    text = config.read_text()
    assert "\ntls_port" not in text
    config.write_text(text.replace("[broker]\n", "[broker]\n" + "\n".join(lines) + "\n", 1))
    again = crossdock("gateway", "tls-cert", "--config", str(config), "--host", "localhost")
    assert again.returncode == 1 and "exists" in again.stderr

    assert crossdock("gateway", "ingest", "--config", str(config)).returncode == 0
    tablet = tmp_path / "tablet" / "tab-1.toml"
    tablet.parent.mkdir()  # devices add refuses a folder that does not exist (issue 10)
    added = crossdock("gateway", "devices", "add", "tab-1", "--driver", "DRV-001",
                      "--agent-config", str(tablet), "--config", str(config))
    assert added.returncode == 0, added.stderr
    written = tablet.read_text()
    assert f'host = "localhost"\nport = {tls_port}\n' in written
    assert 'tls = true\nca_file = "tab-1-ca.pem"\n' in written
    assert (tablet.parent / "tab-1-ca.pem").read_bytes() == (depot / "broker-cert.pem").read_bytes()

    gateway_log, agent_log = tmp_path / "gateway.log", tmp_path / "agent.log"
    gateway = spawn(gateway_log, "gateway", "run", "--config", str(config), "--no-scheduler")
    agent = spawn(agent_log, "agent", "run", "--config", str(tablet))
    try:
        assert until(lambda: route(tablet), timeout=20), (
            f"no route over TLS; gateway: {gateway_log.read_text()[-600:]} "
            f"agent: {agent_log.read_text()[-600:]}")
    finally:
        stop(agent)
        stop(gateway)
    mosquitto_log = (depot / "broker" / "mosquitto.log").read_text()
    assert re.search(rf"New connection from [0-9.]+:[0-9]+ on port {tls_port}\.", mosquitto_log)
    assert "Traceback" not in gateway_log.read_text() + agent_log.read_text()
