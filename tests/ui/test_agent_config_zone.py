"""``devices add --agent-config`` and ``devices rotate`` write the depot's zone into the tablet's
config, and the tablet built from that file states it on its sync bar and formats its times in
it (how a time reads in a zone: ``test_viewmodels``)."""

from __future__ import annotations

import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result

from agent.config import load_config
from agent.service import Agent
from crossdock_cli import cli
from tests.ui.conftest import Kiosk

# a zone that is neither UTC nor the sample's default, so a file holding it was told it
ZONE = "America/Chicago"


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _depot(tmp_path: Path, *, board_zone: str | None = None) -> Path:
    """A sample depot whose legacy mapping reads its naive times in ``ZONE``."""
    made = _invoke("gateway", "sample", "--out", str(tmp_path / "depot"), "--json")
    assert made.exit_code == 0, made.output
    config = Path(json.loads(made.output)["config"])
    mapping = config.parent / "legacy.mapping.toml"
    text = mapping.read_text(encoding="utf-8")
    assert 'timezone = "Europe/Berlin"' in text
    mapping.write_text(text.replace('timezone = "Europe/Berlin"', f'timezone = "{ZONE}"'),
                       encoding="utf-8")
    if board_zone is not None:
        with config.open("a", encoding="utf-8") as out:
            out.write(f'\n[board]\ntimezone = "{board_zone}"\n')
    (tmp_path / "tablet").mkdir()
    return config


def test_devices_add_and_rotate_write_the_mappings_zone_into_the_tablets_config(
        tmp_path: Path) -> None:
    config = _depot(tmp_path)
    tablet = tmp_path / "tablet" / "tab-1.toml"
    added = _invoke("gateway", "devices", "add", "tab-1", "--driver", "DRV-001",
                    "--agent-config", str(tablet), "--config", str(config))
    assert added.exit_code == 0, added.output
    assert f'timezone = "{ZONE}"\n' in tablet.read_text(encoding="utf-8")
    assert load_config(tablet).timezone == ZONE

    tablet.unlink()
    rotated = _invoke("gateway", "devices", "rotate", "tab-1", "--agent-config", str(tablet),
                      "--config", str(config))
    assert rotated.exit_code == 0, rotated.output
    assert load_config(tablet).timezone == ZONE


def test_the_boards_zone_is_the_depots_zone_when_it_is_set(tmp_path: Path) -> None:
    config = _depot(tmp_path, board_zone="Europe/Lisbon")
    tablet = tmp_path / "tablet" / "tab-1.toml"
    added = _invoke("gateway", "devices", "add", "tab-1", "--driver", "DRV-001",
                    "--agent-config", str(tablet), "--config", str(config))
    assert added.exit_code == 0, added.output
    assert load_config(tablet).timezone == "Europe/Lisbon"


@pytest.mark.ui
def test_the_tablet_from_that_file_states_the_zone_and_formats_its_times_in_it(
        tmp_path: Path, kiosk: Kiosk) -> None:
    from ui.app import TabletApp

    config = _depot(tmp_path)
    tablet = tmp_path / "tablet" / "tab-1.toml"
    added = _invoke("gateway", "devices", "add", "tab-1", "--driver", "DRV-001",
                    "--agent-config", str(tablet), "--config", str(config))
    assert added.exit_code == 0, added.output
    agent = Agent(load_config(tablet))  # never started: the tablet is offline from the start
    root = TabletApp(agent).build()
    kiosk.window.add_widget(root)
    try:
        kiosk.pump(3)
        assert kiosk.until(lambda: f"times in {ZONE}" in root.bar.sources.text)
        assert root.zone == ZoneInfo(ZONE)  # every time on its screens is formatted in it
    finally:
        agent.stop()
