"""What every ``crossdock gateway`` command shares: options, opening the depot, JSON output,
ages, the audit name."""

from __future__ import annotations

import datetime as _dt
import getpass
import json
import os
from pathlib import Path
from typing import Any

import click

from gateway import timefmt
from gateway.config import GatewayConfig, load_config
from gateway.store.core import Store


def utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def age_text(iso: str | None, now: _dt.datetime) -> str:
    """The age of a stored ISO time at ``now``, in the board's words; "never" for none."""
    if not iso:
        return "never"
    return timefmt.age_text((now - _dt.datetime.fromisoformat(iso)).total_seconds())


config_option = click.option(
    "--config", "config_path", type=click.Path(path_type=Path), default="gateway.toml",
    show_default=True, help="The gateway's TOML file.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def open_depot(config_path: Path) -> tuple[GatewayConfig, Store]:
    cfg = load_config(config_path)
    return cfg, Store(cfg.db_path)


def who() -> str:
    """Who ran a command, for the audit log: ``cli:`` and the OS account."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid-{os.getuid()}"
