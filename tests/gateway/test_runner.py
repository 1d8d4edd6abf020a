"""``gateway run``'s supervision: a config file saved half-edited while the gateway runs is
said once and changes nothing; the gateway keeps running with the identities it had."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.runner import GatewayRunner
from gateway.setup import init_dir
from tests.broker import free_port

pytestmark = pytest.mark.broker


def test_a_broken_dispatch_toml_while_running_keeps_the_broker_users(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    init_dir(tmp_path, depot="d", port=free_port(), now=dt.datetime(2026, 11, 27, tzinfo=dt.UTC))
    dispatch = tmp_path / "dispatch.toml"
    good = dispatch.read_bytes()
    runner = GatewayRunner(load_config(tmp_path / "gateway.toml"), scheduler=False)
    runner.start()
    try:
        users = runner.broker.users if runner.broker is not None else ()
        assert "dispatch" in {u.username for u in users}
        dispatch.write_bytes(good.replace(b"[broker]", b"[broker"))  # saved half-edited
        with caplog.at_level(logging.ERROR, logger="gateway.runner"):
            runner.check()
            runner.check()  # said once, not every 5 s
        said = [r.getMessage() for r in caplog.records if "not updated" in r.getMessage()]
        assert len(said) == 1 and str(dispatch) in said[0]
        assert runner.broker is not None and runner.broker.users == users  # kept
        dispatch.write_bytes(good)
        runner.check()  # mended: quiet again...
        dispatch.write_bytes(good.replace(b"[broker]", b"[broker"))
        with caplog.at_level(logging.ERROR, logger="gateway.runner"):
            runner.check()  # ...so the next breakage is said again
        said = [r.getMessage() for r in caplog.records if "not updated" in r.getMessage()]
        assert len(said) == 2
    finally:
        runner.stop()
