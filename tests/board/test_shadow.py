"""The shadow rollout over a sample depot: ``crossdock gateway run --shadow`` ingests and merges
(legacy's FoxPro export and a live optimizer that disagrees on a few drivers), records what
tablets would be sent, and sends nothing; ``crossdock gateway report --json`` lists exactly the
conflicts a normal run over the same inputs opens. The board shows the report."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentConfig
from agent.service import Agent
from gateway.board.server import BoardServer
from gateway.broker.process import ManagedBroker
from gateway.config import load_config
from gateway.store.accounts import AccountStore
from gateway.store.core import Store
from tests.board.conftest import Optimizer, Shots
from tests.board.depotfiles import now
from tests.broker import free_port
from tests.system.test_cli_depot import crossdock, sample, spawn, stop, until

pytestmark = [pytest.mark.broker, pytest.mark.board, pytest.mark.slow]

LIVE_OPTIMIZER = """
[[sources]]
name = "optimizer"
kind = "http"
url = "{url}"
endpoints = ["/plan"]
mode = "live"
interval_s = 3600
"""


def _conflicts(config: Path) -> set[tuple[str, str, tuple[str, ...]]]:
    proc = crossdock("gateway", "conflicts", "--config", str(config), "--json")
    assert proc.returncode == 0, proc.stderr
    return {(c["order_id"], c["field"], tuple(sorted(k["source"] for k in c["candidates"])))
            for c in json.loads(proc.stdout)}


def test_a_shadow_run_reports_the_conflicts_a_normal_run_opens_and_sends_nothing(
        tmp_path: Path, mosquitto: ManagedBroker, optimizer: Optimizer, chromium: Any,
        shots: Shots) -> None:
    config = sample(tmp_path, orders=24, drivers=4)
    text = config.read_text(encoding="utf-8").replace(
        'url = ""', f'url = "mqtt://{mosquitto.host}:{mosquitto.port}"', 1)
    config.write_text(text + LIVE_OPTIMIZER.format(url=optimizer.url), encoding="utf-8")
    shadow_dir = tmp_path / "shadow"
    shutil.copytree(config.parent, shadow_dir)  # the same inputs, before anything read them
    shadow = shadow_dir / "gateway.toml"

    # a normal run over the inputs: legacy, then an optimizer moving three orders
    assert crossdock("gateway", "ingest", "--config", str(config), "--source", "legacy"
                     ).returncode == 0
    with Store(load_config(config).db_path) as store:
        orders = sorted(store.source_orders("legacy"))
    moved = orders[:3]
    optimizer.proposals = [{"order_id": o, "driver": "DRV-OPT"} for o, _vals in moved]
    assert crossdock("gateway", "ingest", "--config", str(config)).returncode == 0
    normal = _conflicts(config)
    assert {(o, "driver") for o, _v in moved} <= {(o, f) for o, f, _s in normal}

    # the shadow depot: a tablet registered and online, listening on the gateway's broker
    driver = str(moved[0][1]["driver"])
    tablet = tmp_path / "tab-1.toml"  # the store keeps only a hash: the file has the password
    added = crossdock("gateway", "devices", "add", "tab-1", "--driver", driver,
                      "--agent-config", str(tablet), "--config", str(shadow))
    assert added.returncode == 0, added.stderr
    password = tomllib.loads(tablet.read_text(encoding="utf-8"))["broker"]["password"]
    agent = Agent(AgentConfig.model_validate({
        "depot": "depot-1", "device": "tab-1", "driver": driver,
        "db": str(tmp_path / "tab-1.sqlite"),
        "broker": {"host": mosquitto.host, "port": mosquitto.port, "username": "tab-1",
                   "password": password},
    }))
    agent.start()
    try:
        assert agent.wait_online(10)
        proc = spawn(tmp_path / "shadow.log", "gateway", "run", "--shadow", "--config",
                     str(shadow))
        try:
            def reported() -> dict[str, Any] | None:
                got = crossdock("gateway", "report", "--config", str(shadow), "--json")
                if got.returncode != 0:
                    return None
                data = json.loads(got.stdout)
                days = data["days"]
                ok = days and days[-1]["would_be_conflicts"] >= len(normal)
                return data if ok else None

            data = until(reported, timeout=60)
            assert data, (tmp_path / "shadow.log").read_text()
        finally:
            stop(proc)
        (day,) = data["days"]
        assert data["timezone"] == "Europe/Berlin"
        listed = {(c["order_id"], c["field"], tuple(sorted(c["sources"])))
                  for c in day["conflicts"]}
        assert listed == normal
        assert {r["field"] for r in day["by_field_and_sources"]} >= {"driver"}
        assert any(r["sources"] == "legacy vs optimizer" for r in day["by_field_and_sources"])
        assert {r["order_id"] for r in day["legacy_contradicted"]} >= {o for o, _v in moved}
        ages = {r["source"]: r for r in day["source_ages"]}
        assert ages["legacy"]["oldest_age_s"] > 0 and ages["optimizer"]["samples"] >= 1
        assert day["would_send"]["by_device"].get("tab-1", 0) > 0  # what it would have got
        # ...and what it got: nothing
        assert agent.sync_status().last_seq == 0 and agent.route() == []
    finally:
        agent.stop()

    # the board shows the report
    cfg = load_config(shadow)
    with Store(cfg.db_path) as store:
        AccountStore(store).add_user("anna", "correct horse", now())
    board = BoardServer(cfg, port=free_port(), shadow=True)  # as `gateway run --shadow` serves it
    board.start()
    try:
        page = chromium.new_page(viewport={"width": 1366, "height": 768})
        page.goto(board.url + "/login")
        page.fill("#name", "anna")
        page.fill("#password", "correct horse")
        with page.expect_navigation():
            page.click("button[type=submit]")
        assert "SHADOW MODE" in page.inner_text("body")
        refused = board.board.commands("anna", {"action": "approve", "proposal_id": "x"})
        assert not refused.ok and "shadow mode" in refused.reason
        page.goto(board.url + "/report")
        body = page.inner_text("main")
        assert "would-be conflict" in body and "legacy vs optimizer" in body
        assert moved[0][0] in body and "DRV-OPT" in body
        assert f"The conflicts a normal run would have opened ({len(normal)})" in body
        shots.take(page, "board-report", "main")
        page.close()
    finally:
        board.stop()
