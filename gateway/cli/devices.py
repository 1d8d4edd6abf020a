"""``gateway devices``: the registry of tablets (add, revoke, rotate, bind, list)."""

from __future__ import annotations

import datetime as _dt
import secrets
from pathlib import Path
from typing import Any

import click

from gateway.cli.common import (
    age_text,
    config_option,
    emit,
    json_option,
    open_depot,
    utc_now,
    who,
)
from gateway.config import GatewayConfig
from gateway.setup import (
    check_agent_config,
    check_agent_file,
    check_driver,
    write_agent_config,
)
from gateway.store.core import Store
from gateway.store.devices import DeviceStore
from sync.topics import check_segment


@click.group()
def devices() -> None:
    """The device registry: which tablet belongs to which driver."""


@devices.command("add")
@click.argument("device")
@click.option("--driver", required=True, help="The driver id the tablet shows the route of.")
@click.option("--agent-config", "agent_config", type=click.Path(path_type=Path), default=None,
              help="Write the tablet's config file here.")
@click.option("--force", is_flag=True,
              help="Register a driver the depot does not know yet; replace another device's "
                   "--agent-config file.")
@config_option
def devices_add(device: str, driver: str, agent_config: Path | None, force: bool,
                config_path: Path) -> None:
    """Register DEVICE for a driver; write the one file the tablet needs."""
    from gateway.streams.views import sync_driver  # +19 ms to every command

    check_segment(device, "device")
    cfg, store = open_depot(config_path)
    # every refusal before registering: it leaves nothing half-done
    if agent_config is not None:
        check_agent_file(agent_config, device=device, force=force)
        check_agent_config(cfg)
    with store:
        if not force:
            check_driver(cfg, store, driver)
        with store.transaction():
            known = DeviceStore(store).get(device)
            # the store keeps only a hash: a tablet's file can be written only with a new
            # password (the old file stops working); without --agent-config a registered
            # device keeps its credential and is only bound to the driver
            password = (secrets.token_urlsafe(18) if known is None or agent_config is not None
                        else None)
            DeviceStore(store).add(device, driver, password, utc_now())
            store.audit(utc_now(), who(), "device-add", device=device, driver=driver)
        sync_driver(store, driver, cfg.merge_policy(), utc_now())
        apply_registry(cfg, store)
    click.echo(f"device {device} bound to driver {driver}")
    if agent_config is not None:
        assert password is not None  # issued above for every --agent-config
        written = write_agent_config(agent_config, cfg, device=device, driver=driver,
                                     password=password)
        click.echo(f"wrote {agent_config} (keep it private: it holds the device's credential)")
        for extra in written[1:]:
            click.echo(f"wrote {extra} (the certificate the tablet trusts; copy it with the "
                       "config)")


@devices.command("revoke")
@click.argument("device")
@config_option
def devices_revoke(device: str, config_path: Path) -> None:
    """Revoke DEVICE at once: its broker identity, live connection, session and stream go;
    anything it still sends is refused and counted. `rotate` gives it a new credential."""
    cfg, store = open_depot(config_path)
    with store:
        with store.transaction():
            DeviceStore(store).revoke(device, utc_now())
            store.audit(utc_now(), who(), "device-revoke", device=device)
        apply_registry(cfg, store)
    click.echo(f"device {device} revoked")


@devices.command("rotate")
@click.argument("device")
@click.option("--agent-config", "agent_config", type=click.Path(path_type=Path), required=True,
              help="Write the tablet's new config file here.")
@config_option
def devices_rotate(device: str, agent_config: Path, config_path: Path) -> None:
    """Issue DEVICE a new credential (its config file at OUT); the old one stops working and
    its connection and session are dropped. A revoked device is active again."""
    cfg, store = open_depot(config_path)
    check_agent_config(cfg)
    password = secrets.token_urlsafe(18)
    with store:
        with store.transaction():
            found = DeviceStore(store).rotate(device, password, utc_now())
            store.audit(utc_now(), who(), "device-rotate", device=device)
        written = write_agent_config(agent_config, cfg, device=device, driver=found.driver,
                                     password=password)
        apply_registry(cfg, store)
    click.echo(f"device {device}: new credential in {agent_config} (keep it private); "
               "the old one no longer works")
    for extra in written[1:]:
        click.echo(f"wrote {extra} (the certificate the tablet trusts; copy it with the config)")


@devices.command("bind")
@click.argument("device")
@click.option("--driver", required=True, help="The driver the tablet now belongs to.")
@config_option
def devices_bind(device: str, driver: str, config_path: Path) -> None:
    """Move DEVICE to another driver: the old route leaves the tablet, the new one arrives;
    actions it made before and has not yet had acknowledged still count for the old route."""
    from gateway.streams.views import sync_driver  # +19 ms to every command

    cfg, store = open_depot(config_path)
    with store:
        with store.transaction():
            old = DeviceStore(store).get(device)
            found = DeviceStore(store).bind(device, driver, utc_now())
            store.audit(utc_now(), who(), "device-bind", device=device, driver=driver,
                        previous=None if old is None else old.driver)
        sync_driver(store, driver, cfg.merge_policy(), utc_now())
        apply_registry(cfg, store)
    click.echo(f"device {device} bound to driver {found.driver}")


@devices.command("list")
@config_option
@json_option
def devices_list(config_path: Path, as_json: bool) -> None:
    """Registered devices: driver, state (active/revoked), last change, stream positions,
    when each last acknowledged its stream (``acked_at``, and its age in seconds), presence."""
    _cfg, store = open_depot(config_path)
    now = utc_now()
    with store:
        ds = DeviceStore(store)
        statuses = ds.statuses()
        positions = ds.stream_positions()
        rows: list[dict[str, Any]] = []
        for d in ds.all():
            acked = positions[d.device].acked_at if d.device in positions else None
            rows.append(
                {"device": d.device, "driver": d.driver, "state": d.state,
                 "created_at": d.created_at, "changed_at": d.changed_at,
                 "previous_driver": d.previous_driver, "rebound_at": d.rebound_at,
                 "last_seq": ds.bounds(d.device)[1], "applied_seq": ds.applied(d.device),
                 "acked_at": acked, "ack_age_s": None if acked is None else round(
                     (now - _dt.datetime.fromisoformat(acked)).total_seconds(), 1),
                 "status": statuses.get(d.device)})
    if as_json:
        emit(rows)
        return
    for r in rows:
        online = (r["status"] or {}).get("online")
        state = "REVOKED" if r["state"] == "revoked" else ("online" if online else "offline")
        click.echo(f"{r['device']}: driver {r['driver']}, seq {r['applied_seq']}/{r['last_seq']}"
                   f", last stream ack {age_text(r['acked_at'], now)}, {state}")


def apply_registry(cfg: GatewayConfig, store: Store) -> None:
    """Make a registry change take effect: the broker's files rewritten from the store, and a
    running ``gateway run`` told (SIGUSR1: it reloads the broker and drops what must go)."""
    from gateway.runner import tell_running_gateway, write_broker_files  # +131 ms (see run)

    write_broker_files(cfg, store)
    pid = tell_running_gateway(cfg)
    if pid is not None:
        click.echo(f"the running gateway (pid {pid}) applies it now")
    else:
        click.echo("no gateway runs here: it applies it when it starts (a running one checks "
                   "every 5 s)")
