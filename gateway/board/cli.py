"""Commands of the dispatch board and the shadow rollout (DESIGN §8):

``crossdock gateway users add NAME``, ``crossdock gateway proposals``, ``crossdock gateway
report`` (added to the ``gateway`` group by ``gateway/cli/__init__.py``) and ``crossdock board``.
``crossdock gateway run --shadow`` lives with ``run`` in ``gateway/cli/run.py``.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
from pathlib import Path
from typing import Any

import click

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.store.core import Store


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def _emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


config_option = click.option(
    "--config", "config_path", type=click.Path(path_type=Path), default="gateway.toml",
    show_default=True, help="The gateway's TOML file.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group()
def users() -> None:
    """Dispatchers' logins for the dispatch board."""


@users.command("add")
@click.argument("name")
@config_option
@click.option("--password-file", type=click.Path(path_type=Path), default=None,
              help="Read the password from this file's first line (else it is asked for).")
@click.option("--replace", is_flag=True,
              help="Change the password of an existing login (its sessions end).")
def users_add(name: str, config_path: Path, password_file: Path | None, replace: bool) -> None:
    """Add a login NAME for the board (its password is asked for, or read from a file)."""
    from gateway.store.accounts import USER_NAME, AccountStore

    if not USER_NAME.match(name):  # before asking for a password
        raise ConfigError(f"user name {name!r}: want a lower-case letter, then letters, "
                          "digits, '.', '_' or '-' (at most 32)")
    cfg = load_config(config_path)
    if password_file is not None:
        try:
            lines = password_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"--password-file {password_file}: {exc.strerror}") from None
        password = lines[0] if lines else ""
    elif sys.stdin.isatty():
        password = click.prompt(f"password for {name}", hide_input=True,
                                confirmation_prompt=True)
    else:
        raise ConfigError("no terminal to ask for the password: use --password-file FILE")
    with Store(cfg.db_path) as store:
        added = AccountStore(store).add_user(name, password, _now(), replace=replace)
    if not added:
        raise ConfigError(f"user {name} exists already (--replace changes the password)")
    click.echo(f"{'password changed for' if replace else 'added'} board user {name}")


@users.command("list")
@config_option
@json_option
def users_list(config_path: Path, as_json: bool) -> None:
    """The board's logins."""
    from gateway.store.accounts import AccountStore

    cfg = load_config(config_path)
    with Store(cfg.db_path) as store:
        names = AccountStore(store).users()
    if as_json:
        _emit(names)
        return
    for name in names:
        click.echo(name)


@click.command()
@config_option
@click.option("--all", "include_decided", is_flag=True,
              help="Also shadow, approved, rejected and expired proposals.")
@json_option
def proposals(config_path: Path, include_decided: bool, as_json: bool) -> None:
    """Optimizer proposals held for approval, with the ids `dispatch approve/reject` take.

    An id is SOURCE:RUN:ORDER (the run that read the proposal), e.g. optimizer:12:O-1001.
    """
    from gateway.store.listings import PROPOSAL_STATES
    from gateway.store.listings import proposals as listing

    cfg = load_config(config_path)
    with Store(cfg.db_path) as store:
        rows = listing(store, states=PROPOSAL_STATES if include_decided else ("pending",))
    if as_json:
        _emit([r.as_dict() for r in rows])
        return
    for r in rows:
        what = "drop the order" if r.withdraws else ", ".join(
            f"{k}={v}" for k, v in r.values.items())
        window = f", window ends {r.expires_at}" if r.expires_at else ""
        click.echo(f"{r.proposal_id}: order {r.order_id}: {what} ({r.state}{window})")
    click.echo(f"{len(rows)} proposal(s)")


@click.command()
@config_option
@json_option
def report(config_path: Path, as_json: bool) -> None:
    """The shadow-rollout report: would-be conflicts by field and source pair, per day."""
    from gateway.shadow import report as build

    cfg = load_config(config_path)
    with Store(cfg.db_path) as store:
        data = build(store, cfg)
    if as_json:
        _emit(data)
        return
    click.echo(f"days in {data['timezone']}")
    if not data["days"]:
        click.echo("no shadow run has recorded anything (crossdock gateway run --shadow)")
    for d in data["days"]:
        click.echo(f"{d['day']}: {d['would_be_conflicts']} would-be conflicts, "
                   f"{d['would_send']['entries']} stream entries not sent")
        for r in d["by_field_and_sources"]:
            click.echo(f"  {r['field']}: {r['sources']}: {r['count']}")
        for s in d["source_ages"]:
            click.echo(f"  {s['source']}: as of {s['last_as_of'] or 'never'}")


@click.command()
@config_option
@click.option("--port", type=int, default=None, help="Instead of [board] port.")
def board(config_path: Path, port: int | None) -> None:
    """The dispatch board alone, on [board] host:port (`gateway run` also serves it)."""
    from gateway.board.server import BoardServer

    cfg = load_config(config_path)
    if cfg.board is None:
        raise ConfigError(f"config {config_path}: no [board] table (host, port; see README)")
    server = BoardServer(cfg, config_path=config_path, port=port)
    click.echo(f"dispatch board for depot {cfg.depot} on {server.url}; Ctrl-C stops it",
               err=True)
    server.serve_forever()  # uvicorn stops on SIGINT and SIGTERM
