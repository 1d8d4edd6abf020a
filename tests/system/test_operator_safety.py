"""Operator safety through the `crossdock` command (issue 10): a gateway that restarts after
its own crash, one process per store, and commands that refuse to destroy a depot."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.system.test_cli_depot import crossdock, sample, spawn, stop, until

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_gateway_run_killed_with_sigkill_starts_again_at_once(tmp_path: Path):
    config = sample(tmp_path, orders=10, drivers=2)
    first_log, second_log = tmp_path / "run-1.log", tmp_path / "run-2.log"
    first = spawn(first_log, "gateway", "run", "--config", str(config), "--no-scheduler")
    try:
        assert until(lambda: "running" in first_log.read_text()), first_log.read_text()
        broker_pid = int((config.parent / "broker" / "mosquitto.pid").read_text())
        os.kill(first.pid, signal.SIGKILL)  # the power button on a frozen box
        first.wait()
    finally:
        stop(first)
    second = spawn(second_log, "gateway", "run", "--config", str(config), "--no-scheduler")
    try:
        assert until(lambda: "running" in second_log.read_text() or second.poll() is not None)
        assert second.poll() is None, second_log.read_text()
        assert b"mosquitto" not in _cmdline(broker_pid)  # the old broker is gone
    finally:
        stop(second)
    assert "Address already in use" not in second_log.read_text()


def test_a_second_gateway_run_on_one_store_says_who_holds_it(tmp_path: Path):
    config = sample(tmp_path, orders=10, drivers=2)
    log = tmp_path / "run.log"
    first = spawn(log, "gateway", "run", "--config", str(config), "--no-scheduler")
    try:
        assert until(lambda: "running" in log.read_text()), log.read_text()
        second = crossdock("gateway", "run", "--config", str(config), "--no-scheduler",
                           timeout=30)
        assert second.returncode == 1
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert f"pid {first.pid}" in lines[0] and "gateway run" in lines[0]
        assert "since" in lines[0] and "gateway.sqlite" in lines[0]
        # short commands that only read still work beside it
        for command in ("sources", "conflicts", "quarantine"):
            proc = crossdock("gateway", command, "--config", str(config), "--json")
            assert proc.returncode == 0, proc.stderr
        assert first.poll() is None
    finally:
        stop(first)


def test_a_second_agent_run_on_one_tablet_store_says_who_holds_it(tmp_path: Path):
    config = sample(tmp_path, orders=10, drivers=2)
    tablet = tmp_path / "tab-1.toml"
    added = crossdock("gateway", "devices", "add", "tab-1", "--driver", "DRV-001",
                      "--agent-config", str(tablet), "--config", str(config))
    assert added.returncode == 0, added.stderr
    log = tmp_path / "agent.log"
    first = spawn(log, "agent", "run", "--config", str(tablet))  # no broker: it keeps trying
    try:
        lock = tmp_path / "tab-1.sqlite.lock"
        assert until(lambda: lock.exists() and f'"pid": {first.pid}' in lock.read_text())
        second = crossdock("agent", "run", "--config", str(tablet), timeout=30)
        assert second.returncode == 1
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert f"pid {first.pid}" in lines[0] and "agent run" in lines[0]
        state = crossdock("agent", "state", "--config", str(tablet), "--json")
        assert state.returncode == 0, state.stderr  # reading beside it works
    finally:
        stop(first)


def test_dispatch_with_a_wrong_password_says_not_authorized(tmp_path: Path):
    config = sample(tmp_path, orders=10, drivers=2)
    log = tmp_path / "run.log"
    gateway = spawn(log, "gateway", "run", "--config", str(config), "--no-scheduler")
    try:
        assert until(lambda: "running" in log.read_text()), log.read_text()
        dispatch = config.parent / "dispatch.toml"
        text = dispatch.read_text()
        wrong = tmp_path / "wrong-dispatch.toml"
        wrong.write_text("\n".join(
            'password = "not-the-password"' if line.startswith("password") else line
            for line in text.splitlines()) + "\n")
        proc = crossdock("dispatch", "--config", str(wrong), "cancel", "ORD-000001")
        assert proc.returncode == 1
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert "not authorized" in lines[0] and "no broker" not in lines[0]
    finally:
        stop(gateway)


def test_a_broker_url_that_does_not_answer_is_one_warning_and_shows_in_sources(tmp_path: Path):
    from tests.broker import free_port

    config = sample(tmp_path, orders=10, drivers=2)
    nowhere = f"mqtt://127.0.0.1:{free_port()}"
    config.write_text(config.read_text().replace('url = ""', f'url = "{nowhere}"', 1))
    log = tmp_path / "run.log"
    gateway = spawn(log, "gateway", "run", "--config", str(config), "--no-scheduler")
    try:
        def shown() -> str:
            proc = crossdock("gateway", "sources", "--config", str(config))
            return proc.stdout if "NOT CONNECTED" in proc.stdout else ""

        out = until(shown)
        assert f"broker {nowhere}: NOT CONNECTED" in out and "does not answer" in out
        as_json = crossdock("gateway", "sources", "--config", str(config), "--json")
        row = next(r for r in json.loads(as_json.stdout) if r["kind"] == "broker")
        assert row["mode"] == "not connected" and row["url"] == nowhere
        time.sleep(3)  # a few retries later: still said once
        warnings = [ln for ln in log.read_text().splitlines() if "does not answer" in ln]
        assert len(warnings) == 1, log.read_text()
        assert nowhere in warnings[0]
    finally:
        stop(gateway)
