"""An optimizer in `approve` mode: its proposals wait for dispatch, for a window, then expire."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from httpserver import ScriptedServer, proposals
from legacy import Clock, write_config

from gateway.errors import CommandError
from gateway.ingest.pipeline import ingest_source
from gateway.store.core import Store
from gateway.streams import commands
from sync.envelope import ApproveCommand, RejectCommand
from sync.model import Policy


def _approve_cfg(tmp_path: Path, server: ScriptedServer, window_s: int = 600):
    return write_config(tmp_path, "\n".join([
        'name = "optimizer"', 'kind = "http"', f'url = "{server.url}"', 'mode = "approve"',
        f"approval_window_s = {window_s}", 'endpoints = ["/p"]', "timeout_s = 2",
        "rate_per_s = 100"]))


def _proposals(store: Store) -> dict[str, tuple[str, str]]:
    return {o: (pid, state) for pid, o, state in store.conn.execute(
        "SELECT proposal_id, order_id, state FROM proposals")}


def _approve(store: Store, pid: str, clock: Clock) -> dict:
    cmd = ApproveCommand(action="approve", client="anna", proposal_id=pid)
    with store.transaction():
        return commands.approve(store, cmd, policy=Policy(), now=clock())


def test_approved_proposal_becomes_claims_and_rejected_one_does_not(
    tmp_path: Path, http_server: ScriptedServer
) -> None:
    clock = Clock()
    http_server.script("/p", proposals("O-1", "O-2"))
    cfg = _approve_cfg(tmp_path, http_server)
    with Store(cfg.db_path) as store:
        (run,) = ingest_source(store, cfg, cfg.source("optimizer"), now=clock)
        assert run.status == "ok"
        held = _proposals(store)
        assert {o: s for o, (_p, s) in held.items()} == {"O-1": "pending", "O-2": "pending"}
        assert store.conn.execute("SELECT count(*) FROM claim_sets").fetchone()[0] == 0

        assert _approve(store, held["O-1"][0], clock) == {"order_id": "O-1"}
        with store.transaction():
            commands.reject(store, RejectCommand(action="reject", client="anna",
                                                 proposal_id=held["O-2"][0]), now=clock())
        claims = store.conn.execute("SELECT order_id, source, vals FROM claim_sets").fetchall()
        assert [(o, s, json.loads(v)["driver"]) for o, s, v in claims] == [
            ("O-1", "optimizer", "d1")]
        assert {o: s for o, (_p, s) in _proposals(store).items()} == {
            "O-1": "approved", "O-2": "rejected"}
        with pytest.raises(CommandError, match="already approved"):
            _approve(store, held["O-1"][0], clock)
        with pytest.raises(CommandError, match="unknown proposal nope"):
            _approve(store, "nope", clock)


def test_proposal_past_its_window_is_stale_and_expires(
    tmp_path: Path, http_server: ScriptedServer
) -> None:
    clock = Clock()
    http_server.script("/p", proposals("O-1"))
    cfg = _approve_cfg(tmp_path, http_server, window_s=60)
    with Store(cfg.db_path) as store:
        ingest_source(store, cfg, cfg.source("optimizer"), now=clock)
        (pid, _state), = _proposals(store).values()
        clock.advance(61)
        with pytest.raises(CommandError, match="approval window ended"):
            _approve(store, pid, clock)
        with store.transaction():
            assert commands.expire_proposals(store, clock(), on_expiry="reject") == 1
        assert _proposals(store)["O-1"][1] == "expired"
        assert store.conn.execute("SELECT count(*) FROM claim_sets").fetchone()[0] == 0
