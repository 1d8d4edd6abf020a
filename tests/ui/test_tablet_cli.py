"""``crossdock tablet --config TAB.toml``: the agent and the app in one process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.config import load_config
from crossdock_cli import cli
from gateway.broker.process import ManagedBroker
from gateway.store.devices import DeviceStore
from sync.host.lock import StoreLock
from tests.system.depot import Depot, wait_for, write_agent_config
from tests.ui.conftest import Kiosk


@pytest.fixture
def depot(tmp_path: Path, mosquitto: ManagedBroker) -> Iterator[Depot]:
    d = Depot(tmp_path / "depot", mosquitto.host, mosquitto.port)
    d.start()
    try:
        yield d
    finally:
        d.stop()


def test_a_missing_config_is_one_line_and_exit_1_before_any_window(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["tablet", "--config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"crossdock: agent config {tmp_path / 'nope.toml'}: no such file"]


def test_a_store_held_by_an_agent_is_one_line_and_exit_1_before_any_window(
        tmp_path: Path) -> None:
    config = tmp_path / "tab-7.toml"
    config.write_text('depot = "test-depot"\ndevice = "tab-7"\ndriver = "7"\n'
                      'db = "tab-7.sqlite"\n\n[broker]\nhost = "127.0.0.1"\nport = 1\n',
                      encoding="utf-8")
    db = load_config(config).db
    with StoreLock(db, holder="agent run"):
        result = CliRunner().invoke(cli, ["tablet", "--config", str(config)])
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"crossdock: {db} is in use by agent run (pid {os.getpid()}, since ")


@pytest.mark.ui
@pytest.mark.broker
def test_tablet_runs_agent_and_window_until_sigterm(
        depot: Depot, window: Kiosk, tmp_path: Path) -> None:
    depot.export([("X", "7", 1, "PLANNED")])
    depot.add_device("tab-7", "7", start=False)
    depot.agents.clear()  # the window's process runs this tablet's agent
    config = write_agent_config(depot, "tab-7", "7")

    def online() -> bool | None:
        with depot.store() as store:
            status = DeviceStore(store).statuses().get("tab-7")
        return None if status is None else bool(status["online"])

    log = (tmp_path / "tablet.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "crossdock_cli", "tablet", "--config",
                             str(config)], stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ))
    try:
        assert wait_for(lambda: online() is True, 60), (tmp_path / "tablet.log").read_text()
        assert proc.poll() is None  # the window is open
        # it holds the tablet's store as `agent run` does: a second agent is told who runs
        second = CliRunner().invoke(cli, ["agent", "run", "--config", str(config)])
        assert second.exit_code == 1
        assert f"is in use by crossdock tablet (pid {proc.pid}, since " in second.output
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, (tmp_path / "tablet.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert wait_for(lambda: online() is False, 20)  # it said "offline" as it stopped
