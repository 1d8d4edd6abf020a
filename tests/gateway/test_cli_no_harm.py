"""Nothing is destroyed without --force (issue 10): `gateway init`, `gateway sample`,
`demo --dir` and `devices add` refuse what would replace a depot's files, in one line, exit 1,
with everything left as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from crossdock_cli import cli


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _refused(result: Result, *words: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0], lines[0]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture
def depot(tmp_path: Path) -> Path:
    out = tmp_path / "depot"
    result = _invoke("gateway", "sample", "--out", str(out), "--orders", "20", "--drivers", "3",
                     "--json")
    assert result.exit_code == 0, result.output
    return out


def test_init_on_a_depot_refuses_and_changes_nothing(depot: Path) -> None:
    before = _files(depot)
    _refused(_invoke("gateway", "init", "--dir", str(depot)), str(depot), "gateway.toml",
             "--force")
    assert _files(depot) == before


def test_init_with_force_rewrites_the_depot_files(depot: Path) -> None:
    old = (depot / "dispatch.toml").read_text()
    result = _invoke("gateway", "init", "--dir", str(depot), "--force")
    assert result.exit_code == 0, result.output
    assert (depot / "dispatch.toml").read_text() != old  # a new password


def test_sample_on_a_depot_refuses_and_keeps_its_export(depot: Path) -> None:
    before = _files(depot)
    _refused(_invoke("gateway", "sample", "--out", str(depot), "--seed", "2"), str(depot),
             "orders.dbf", "--force")
    assert _files(depot) == before
    again = _invoke("gateway", "sample", "--out", str(depot), "--seed", "2", "--force")
    assert again.exit_code == 0, again.output
    assert (depot / "export" / "orders.dbf").read_bytes() != before["export/orders.dbf"]


def test_sample_out_a_file_says_it_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    _refused(_invoke("gateway", "sample", "--out", str(target)), str(target), "is a file")
    assert target.read_text() == "mine"


def test_demo_dir_holding_anything_is_refused_and_left_alone(depot: Path) -> None:
    kept = depot / "export" / "operator-notes.txt"  # a file the operator put there
    kept.write_text("keep me")
    before = _files(depot)
    _refused(_invoke("demo", "--dir", str(depot)), str(depot), "not empty", "--force")
    assert _files(depot) == before


def test_devices_add_refuses_an_unknown_driver(depot: Path) -> None:
    config = str(depot / "gateway.toml")
    _refused(_invoke("gateway", "devices", "add", "tab-9", "--driver", "DRV-NOPE",
                     "--config", config), "DRV-NOPE", "not known")
    listed = _invoke("gateway", "devices", "list", "--config", config, "--json")
    assert json.loads(listed.output) == []  # nothing registered
    forced = _invoke("gateway", "devices", "add", "tab-9", "--driver", "DRV-NOPE", "--force",
                     "--config", config)
    assert forced.exit_code == 0, forced.output


def test_devices_add_refuses_another_devices_agent_config(depot: Path, tmp_path: Path) -> None:
    config = str(depot / "gateway.toml")
    theirs = tmp_path / "tab-1.toml"
    first = _invoke("gateway", "devices", "add", "tab-1", "--driver", "DRV-001",
                    "--agent-config", str(theirs), "--config", config)
    assert first.exit_code == 0, first.output
    before = theirs.read_bytes()
    _refused(_invoke("gateway", "devices", "add", "tab-2", "--driver", "DRV-002",
                     "--agent-config", str(theirs), "--config", config),
             str(theirs), "belongs to device tab-1")
    assert theirs.read_bytes() == before
    listed = _invoke("gateway", "devices", "list", "--config", config, "--json")
    assert [d["device"] for d in json.loads(listed.output)] == ["tab-1"]
    again = _invoke("gateway", "devices", "add", "tab-1", "--driver", "DRV-001",
                    "--agent-config", str(theirs), "--config", config)
    assert again.exit_code == 0, again.output  # its own file is rewritten


def test_devices_add_refuses_a_folder_that_does_not_exist(depot: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent" / "dir" / "tab-1.toml"
    _refused(_invoke("gateway", "devices", "add", "tab-1", "--driver", "DRV-001",
                     "--agent-config", str(missing), "--config", str(depot / "gateway.toml")),
             str(missing.parent), "does not exist")
    assert not missing.parent.exists()


def test_conflicts_text_shows_every_time_in_the_depots_zone_said_once(depot: Path) -> None:
    import datetime as dt
    from zoneinfo import ZoneInfo

    from gateway.config import load_config
    from gateway.store.core import Store
    from gateway.streams.commands import assign
    from gateway.streams.views import refresh
    from sync.envelope import AssignCommand

    config = depot / "gateway.toml"
    assert _invoke("gateway", "ingest", "--config", str(config)).exit_code == 0
    cfg = load_config(config)
    now = dt.datetime(2026, 12, 1, 19, 19, tzinfo=dt.UTC)  # 20:19 in Berlin
    with Store(cfg.db_path) as store:
        with store.transaction():
            assign(store, AssignCommand(action="assign", client="desk", order_id="ORD-000003",
                                        driver="DRV-003"), command_id="c1",
                   policy=cfg.merge_policy(), now=now)
        refresh(store, cfg.merge_policy(), now)
    found = json.loads(_invoke("gateway", "conflicts", "--config", str(config), "--json").output)
    conflict = next(c for c in found if c["order_id"] == "ORD-000003")
    berlin = ZoneInfo("Europe/Berlin")
    expected = {}
    for cand in conflict["candidates"]:
        at = dt.datetime.fromisoformat(cand["as_of"])
        assert at.utcoffset() is not None  # JSON: ISO 8601 with the offset
        expected[cand["source"]] = f"{at.astimezone(berlin):%Y-%m-%d %H:%M}"
    assert expected["dispatch"] == "2026-12-01 20:19"
    text = _invoke("gateway", "conflicts", "--config", str(config)).output.splitlines()
    assert text[0].startswith("times in Europe/Berlin (UTC+01:00)")
    assert sum("Europe/Berlin" in line for line in text) == 1
    line = next(ln for ln in text if ln.startswith("ORD-000003"))
    for source, shown in expected.items():
        assert f"{source} says" in line and f"as of {shown}," in line
