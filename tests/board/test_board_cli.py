"""The board's commands: ``gateway users add``, ``gateway proposals``, ``crossdock board`` and
``gateway run`` refusing a board beyond loopback without TLS, each with one line and exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from crossdock_cli import cli
from gateway.config import GatewayConfig, load_config
from gateway.ingest.pipeline import ingest_source
from gateway.store.accounts import AccountStore
from gateway.store.core import Store
from tests.board.conftest import Optimizer
from tests.board.depotfiles import now, write_depot


def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


def config(tmp_path: Path) -> tuple[GatewayConfig, str]:
    cfg = write_depot(tmp_path / "depot")
    return cfg, str(tmp_path / "depot" / "gateway.toml")


def test_users_add_reads_the_password_file_and_stores_only_a_hash(tmp_path: Path) -> None:
    cfg, path = config(tmp_path)
    secret = tmp_path / "pw"
    secret.write_text("a long secret\n", encoding="utf-8")
    code, out, _err = run("gateway", "users", "add", "bruno", "--config", path,
                          "--password-file", str(secret))
    assert code == 0 and "added board user bruno" in out
    with Store(cfg.db_path) as store:
        accounts = AccountStore(store)
        assert accounts.check_login("bruno", "a long secret")
        assert not accounts.check_login("bruno", "a long secret\n")
    assert b"a long secret" not in Path(cfg.db_path).read_bytes()
    code, _out, err = run("gateway", "users", "add", "bruno", "--config", path,
                          "--password-file", str(secret))
    assert code == 1 and err.strip() == ("crossdock: user bruno exists already (--replace "
                                         "changes the password)")
    code, out, _err = run("gateway", "users", "list", "--config", path, "--json")
    assert json.loads(out) == ["anna", "bruno"]


def test_users_add_refuses_a_bad_name_a_short_password_and_no_terminal(tmp_path: Path) -> None:
    _cfg, path = config(tmp_path)
    short = tmp_path / "short"
    short.write_text("abc\n", encoding="utf-8")
    code, _out, err = run("gateway", "users", "add", "Bad Name", "--config", path)
    assert code == 1 and "user name 'Bad Name'" in err and len(err.strip().splitlines()) == 1
    code, _out, err = run("gateway", "users", "add", "carla", "--config", path,
                          "--password-file", str(short))
    assert code == 1 and "at least 8 characters" in err
    code, _out, err = run("gateway", "users", "add", "carla", "--config", path, stdin="pw\n")
    assert code == 1 and "--password-file" in err  # never a password on argv or a pipe


def test_proposals_lists_held_ones_with_the_ids_dispatch_takes(
        tmp_path: Path, optimizer: Optimizer) -> None:
    _cfg, path = config(tmp_path)
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(f'\n[[sources]]\nname = "optimizer"\nkind = "http"\nurl = "{optimizer.url}"\n'
                'endpoints = ["/plan"]\nmode = "approve"\napproval_window_s = 600\n')
    optimizer.proposals = [{"order_id": "O-1", "driver": "D2"}]
    cfg = load_config(Path(path))
    with Store(cfg.db_path) as store:
        (summary,) = ingest_source(store, cfg, cfg.source("optimizer"), now=now)
    code, out, _err = run("gateway", "proposals", "--config", path, "--json")
    assert code == 0
    (held,) = json.loads(out)
    assert held["proposal_id"] == f"optimizer:{summary.run_id}:O-1"
    assert held["values"] == {"driver": "D2"} and held["state"] == "pending"
    assert held["expires_at"] is not None
    code, out, _err = run("gateway", "proposals", "--config", path)
    assert f"optimizer:{summary.run_id}:O-1: order O-1: driver=D2 (pending" in out


def test_a_board_beyond_loopback_without_tls_is_refused_in_one_line(tmp_path: Path) -> None:
    _cfg, path = config(tmp_path)
    toml = Path(path)
    toml.write_text(toml.read_text().replace('host = "127.0.0.1"\nport = 8080',
                                             'host = "0.0.0.0"\nport = 8080'))
    for args in (("gateway", "run", "--config", path), ("board", "--config", path)):
        code, _out, err = run(*args)
        assert code == 1
        assert len(err.strip().splitlines()) == 1
        assert "board" in err and "beyond loopback" in err and "certfile" in err


def test_board_without_a_board_table_says_what_to_add(tmp_path: Path) -> None:
    _cfg, path = config(tmp_path)
    toml = Path(path)
    toml.write_text(toml.read_text().replace('[board]\nhost = "127.0.0.1"\nport = 8080\n', ""))
    code, _out, err = run("board", "--config", path)
    assert code == 1 and "no [board] table" in err


@pytest.mark.broker
@pytest.mark.slow
def test_gateway_run_serves_the_board_when_board_is_configured(tmp_path: Path) -> None:
    from tests.board.depotfiles import fetch
    from tests.broker import free_port
    from tests.system.test_cli_depot import sample, spawn, stop, until

    config = sample(tmp_path, orders=10, drivers=2)
    port = free_port()
    with config.open("a", encoding="utf-8") as f:
        f.write(f'\n[board]\nhost = "127.0.0.1"\nport = {port}\n')
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return fetch(url, "/login")[0] == 200
        except OSError:
            return False

    for args in (("gateway", "run", "--config", str(config)), ("board", "--config", str(config))):
        proc = spawn(tmp_path / "run.log", *args)
        try:
            assert until(answers, timeout=60), (tmp_path / "run.log").read_text()
            assert fetch(url, "/api/state")[0] == 401
        finally:
            stop(proc)
        assert proc.returncode in (0, -15), (tmp_path / "run.log").read_text()


def test_a_shadow_run_on_a_store_another_gateway_holds_says_who_and_exits_1(
        tmp_path: Path) -> None:
    from sync.host.lock import StoreLock

    cfg, path = config(tmp_path)
    with StoreLock(cfg.db_path, holder="gateway run"):
        code, _out, err = run("gateway", "run", "--shadow", "--config", path)
    assert code == 1
    line = err.strip().splitlines()[-1]  # after the test depot's file-mode warning
    assert "is in use by gateway run (pid" in line and "Traceback" not in err
