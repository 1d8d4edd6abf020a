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

from crossdock_cli import cli
from gateway.broker.process import ManagedBroker
from gateway.store.devices import DeviceStore
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
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, (tmp_path / "tablet.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert wait_for(lambda: online() is False, 20)  # it said "offline" as it stopped
