"""``crossdock gateway`` commands through click's CliRunner on the real root command."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from legacy import (
    csv_source,
    dbf_order,
    drop_csv,
    foxpro_source,
    order,
    write_config,
    write_mapping,
    write_orders_dbf,
)

from crossdock_cli import cli

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dbf-public"


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    result = _invoke("gateway", "sample", "--out", str(tmp_path / "s"), "--json")
    assert result.exit_code == 0, result.output
    return Path(json.loads(result.output)["config"])


def test_sample_ingests_as_it_is_and_lists_its_dirty_rows_in_quarantine(sample: Path) -> None:
    result = _invoke("gateway", "ingest", "--config", str(sample), "--json")
    assert result.exit_code == 0, result.output
    (run,) = json.loads(result.output)["runs"]
    assert (run["status"], run["rows_read"], run["rows_quarantined"]) == ("ok", 143, 6)
    listed = json.loads(_invoke("gateway", "quarantine", "--config", str(sample),
                                "--json").output)
    assert {q["field"] for q in listed} == {"lat", "status", "driver", "eta", "order_id"}
    assert all({"source", "location", "row", "field", "raw", "reason"} <= set(q) for q in listed)


def test_sources_json_shows_freshness_cadence_last_run_rows_and_last_error(
    sample: Path
) -> None:
    _invoke("gateway", "ingest", "--config", str(sample))
    (src,) = json.loads(_invoke("gateway", "sources", "--config", str(sample), "--json").output)
    assert src["name"] == "legacy" and src["cadence"] == "0 0 * * *"
    assert src["as_of"] is not None and src["as_of"].endswith(("+01:00", "+02:00"))
    assert src["last_run_status"] == "ok" and src["last_run_at"]
    assert (src["rows_read"], src["rows_quarantined"]) == (143, 6)
    assert src["last_error"] is None
    (sample.parent / "export" / "orders.dbf").write_bytes(b"\x99" * 40)
    failed = _invoke("gateway", "ingest", "--config", str(sample), "--json")
    assert failed.exit_code == 1
    (src,) = json.loads(_invoke("gateway", "sources", "--config", str(sample), "--json").output)
    assert src["last_run_status"] == "failed"
    assert "not a DBF table" in src["last_error"]
    assert src["rows_read"] == 143  # the last good run's figures stay


def test_ingest_exits_1_with_the_failed_run_in_json_when_a_source_fails(tmp_path: Path) -> None:
    write_mapping(tmp_path / "legacy.mapping.toml")
    write_config(tmp_path, foxpro_source(path="missing/orders.dbf"))
    result = _invoke("gateway", "ingest", "--config", str(tmp_path / "gateway.toml"), "--json")
    assert result.exit_code == 1
    (run,) = json.loads(result.stdout)["runs"]
    assert run["status"] == "failed" and "file not found" in run["error"]


def test_conflicts_json_lists_candidates_with_source_value_and_as_of(tmp_path: Path) -> None:
    write_mapping(tmp_path / "legacy.mapping.toml")
    write_orders_dbf(tmp_path / "export" / "orders.dbf", [dbf_order(1)])
    drop_csv(tmp_path / "drops", "o.csv", [order("ORD-000001", DRIVER_ID="D2")])
    cfg = write_config(tmp_path, foxpro_source(), csv_source("other"))
    assert _invoke("gateway", "ingest", "--config", str(cfg.base_dir) + "/gateway.toml"
                   ).exit_code == 0
    found = json.loads(_invoke("gateway", "conflicts", "--config",
                               str(tmp_path / "gateway.toml"), "--json").output)
    driver = [c for c in found if c["field"] == "driver"]
    assert len(driver) == 1
    assert {"order_id", "field", "opened_at", "candidates"} <= set(driver[0])
    assert {(c["source"], c["value"]) for c in driver[0]["candidates"]} == {
        ("legacy", "D1"), ("other", "D2")}
    assert all("as_of" in c and "claim_id" in c for c in driver[0]["candidates"])


def test_writeback_command_reports_json_and_writes_once(sample: Path) -> None:
    from gateway.config import load_config
    from gateway.store.core import Store

    cfg = load_config(sample)
    with Store(cfg.db_path) as store, store.transaction():
        store.add_result("r-1", "ORD-000001", {"result_id": "r-1", "order_id": "ORD-000001",
                                               "result": "delivered"}, dt.datetime.now(dt.UTC))
    first = json.loads(_invoke("gateway", "writeback", "--config", str(sample), "--json").output)
    second = json.loads(_invoke("gateway", "writeback", "--config", str(sample), "--json").output)
    assert (first["written"], second["written"], second["pending"]) == (1, 0, 0)


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.iterdir()
                                           if p.suffix.lower() in (".dbf", ".dbc")))
def test_inspect_every_public_fixture_is_json_or_a_one_line_error(fixture: str) -> None:
    result = CliRunner().invoke(cli, ["gateway", "inspect", str(FIXTURES / fixture), "--json"])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    if result.exit_code == 0:
        info = json.loads(result.stdout)
        assert isinstance(info, dict) and info
    else:
        assert result.exit_code == 1
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("crossdock: ")
        assert "Traceback" not in result.stderr and "internal error" not in result.stderr


def test_inspect_names_the_missing_memo_file() -> None:
    result = CliRunner().invoke(cli, ["gateway", "inspect",
                                      str(FIXTURES / "dbase_83_missing_memo.dbf"), "--json"])
    text = result.stdout + result.stderr
    assert "dbase_83_missing_memo" in text and ".dbt" in text.lower()


def test_a_broken_config_is_one_line_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "gateway.toml").write_text("[[sources]]\nname = 'x'\nkind = 'ftp'\n",
                                           encoding="utf-8")
    for command in ("ingest", "sources", "quarantine", "conflicts", "writeback"):
        result = CliRunner().invoke(cli, ["gateway", command, "--config",
                                          str(tmp_path / "gateway.toml")])
        assert result.exit_code == 1, command
        assert len(result.stderr.strip().splitlines()) == 1
        assert result.stderr.startswith("crossdock: config ")


def test_an_empty_export_exits_3_held_and_accept_applies_it_with_who(sample: Path) -> None:
    from gateway.sample import ORDER_COLUMNS

    assert _invoke("gateway", "ingest", "--config", str(sample)).exit_code == 0
    write_orders_dbf(sample.parent / "export" / "orders.dbf", [], spec=ORDER_COLUMNS)
    held = _invoke("gateway", "ingest", "--config", str(sample), "--json")
    assert held.exit_code == 3, held.output
    (run,) = json.loads(held.stdout)["runs"]
    assert run["status"] == "suspect"
    assert (run["held"]["rows_read"], run["held"]["withdraw"], run["held"]["live"]) == (
        0, 137, 137)
    text = _invoke("gateway", "sources", "--config", str(sample))
    assert "SUSPECT" in text.output and "would withdraw 137 of 137 live orders" in text.output
    (src,) = json.loads(_invoke("gateway", "sources", "--config", str(sample), "--json").output)
    assert src["status"] == "suspect" and src["held"]["run_id"] == run["run_id"]
    assert src["orders"] == 137  # nothing withdrawn
    wrong = CliRunner().invoke(cli, ["gateway", "ingest", "--config", str(sample), "--accept",
                                     str(run["run_id"] + 5)])
    assert wrong.exit_code == 1 and "is not a held (suspect) run" in wrong.output
    accepted = _invoke("gateway", "ingest", "--config", str(sample), "--accept",
                       str(run["run_id"]), "--by", "marta", "--json")
    assert accepted.exit_code == 4, accepted.output  # applied; nothing read: degraded
    (done,) = json.loads(accepted.stdout)["runs"]
    assert (done["status"], done["rows_changed"]) == ("degraded", 137)
    from gateway.config import load_config
    from gateway.store.core import Store

    with Store(load_config(sample).db_path) as store:
        assert any(a["actor"] == "marta" and a["action"] == "accept-suspect"
                   for a in store.audit_log())


def test_all_rows_quarantined_exits_4_degraded(tmp_path: Path) -> None:
    write_mapping(tmp_path / "legacy.mapping.toml")
    mapping = tmp_path / "legacy.mapping.toml"
    mapping.write_text(mapping.read_text(encoding="utf-8").replace('"ETA"', '"NO_SUCH"'),
                       encoding="utf-8")
    drop_csv(tmp_path / "drops", "o.csv", [order("O-1"), order("O-2")])
    write_config(tmp_path, csv_source())
    result = _invoke("gateway", "ingest", "--config", str(tmp_path / "gateway.toml"))
    assert result.exit_code == 4, result.output
    assert "legacy: degraded" in result.output
    assert "most rows quarantined (2 of 2)" in result.output


def _ingest_on_a_terminal(config: Path, *args: str) -> tuple[str, str]:
    """``crossdock gateway ingest`` in its own process with stderr on a pseudo-terminal:
    (stdout, what the terminal showed)."""
    import os
    import pty
    import subprocess
    import sys

    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "crossdock_cli", "gateway", "ingest",
                             "--config", str(config), *args], stdout=subprocess.PIPE,
                            stderr=follower, cwd=Path(__file__).resolve().parents[2])
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the process closed its end
            break
        if not chunk:
            break
        shown += chunk
    out, _ = proc.communicate(timeout=120)
    os.close(leader)
    return out.decode(), shown.decode(errors="replace")


def test_progress_bars_per_phase_on_a_terminal_and_clean_json(tmp_path: Path) -> None:
    made = _invoke("gateway", "sample", "--out", str(tmp_path / "s"), "--orders", "600",
                   "--json")
    config = Path(json.loads(made.output)["config"])
    out, shown = _ingest_on_a_terminal(config)
    for label, total in (("legacy: read+validate", "601/601"), ("legacy: diff+commit", "595/595"),
                         ("views: merge", "595/595")):
        assert label in shown and total in shown, shown[-500:]
    assert "100%" in shown and "/s" in shown
    assert "legacy: ok" in out and "[#" not in out
    (tmp_path / "s" / "gateway.sqlite").unlink()
    out, shown = _ingest_on_a_terminal(config, "--json")
    assert json.loads(out)["runs"][0]["status"] == "ok"  # stdout is JSON alone
    assert "read+validate" not in shown and "%" not in shown
