"""Preparing a depot: ``gateway init``, ``sample``, ``inspect`` (what an export holds) and
``tls-cert``."""

from __future__ import annotations

import socket
from pathlib import Path

import click

from gateway.broker.tls import make_self_signed
from gateway.cli.common import config_option, emit, json_option, utc_now
from gateway.config import load_config
from gateway.setup import (
    init_dir,
    write_sample_config,
)


@click.command()
@click.option("--dir", "directory", type=click.Path(path_type=Path), required=True)
@click.option("--depot", default="depot-1", show_default=True)
@click.option("--port", default=1883, show_default=True, help="Managed Mosquitto's port.")
@click.option("--force", is_flag=True, help="Replace the files of a depot already in DIR.")
def init(directory: Path, depot: str, port: int, force: bool) -> None:
    """Write gateway.toml, an example mapping, the store and dispatch.toml into DIR."""
    written = init_dir(directory, depot=depot, port=port, now=utc_now(), force=force)
    for path in written:
        click.echo(f"wrote {path}")


@click.command()
@click.option("--out", "out", type=click.Path(path_type=Path), required=True)
@click.option("--drivers", default=47, show_default=True)
@click.option("--orders", default=142, show_default=True)
@click.option("--seed", default=1, show_default=True)
@click.option("--depot", default="depot-1", show_default=True)
@click.option("--port", default=1883, show_default=True, help="Managed Mosquitto's port.")
@click.option("--force", is_flag=True, help="Replace a depot or export already in OUT.")
@json_option
def sample(out: Path, drivers: int, orders: int, seed: int, depot: str, port: int,
           force: bool, as_json: bool) -> None:
    """Generate a realistic FoxPro export with a few dirty rows, and a gateway.toml for it."""
    info = write_sample_config(out, drivers=drivers, orders=orders, seed=seed, depot=depot,
                               port=port, now=utc_now(), force=force)
    if as_json:
        emit(info)
        return
    counts = info["counts"]
    click.echo(f"wrote {counts['orders']} orders for {counts['drivers']} drivers to "
               f"{info['paths']['orders']} ({len(info['dirty'])} dirty rows on purpose)")
    click.echo(f"config: {info['config']}")
    click.echo(f"next: crossdock gateway ingest --config {info['config']}")


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--encoding", default=None, help="Code page when the file carries none.")
@click.option("--rows", default=5, show_default=True, help="Decoded rows to show.")
@json_option
def inspect(file: Path, encoding: str | None, rows: int, as_json: bool) -> None:
    """What a DBF or CSV export holds: version, code page, fields, counts, a few rows."""
    from gateway.ingest.inspect import inspect_file  # dbfread: +22 ms to every command

    info = inspect_file(file, encoding=encoding, sample=rows)
    if as_json:
        emit(info)
        return
    for key, value in info.items():
        if key in ("fields", "rows", "sample"):
            continue
        click.echo(f"{key}: {value}")
    for field in info.get("fields", []):
        click.echo(f"  field {field}")
    for row in info.get("rows", info.get("sample", [])):
        click.echo(f"  row {row}")


@click.command("tls-cert")
@config_option
@click.option("--host", "hosts", multiple=True, metavar="NAME_OR_IP",
              help="A name or IP tablets use to reach this box (repeat). Default: "
                   "broker.public_host, else this machine's host name.")
@click.option("--days", default=825, show_default=True, help="How long the certificate is valid.")
@click.option("--port", "tls_port", default=8883, show_default=True,
              help="The TLS port to suggest for [broker].")
@click.option("--force", is_flag=True, help="Replace an existing certificate and key.")
def tls_cert(config_path: Path, hosts: tuple[str, ...], days: int, tls_port: int,
             force: bool) -> None:
    """Make a self-signed certificate and key for the broker's TLS listener, beside the config.

    Writes broker-cert.pem and broker-key.pem (mode 0600) and prints the lines to add to
    [broker]; gateway.toml itself is left as it is.
    """

    cfg = load_config(config_path)
    chosen = list(hosts) or [cfg.broker.public_host or socket.gethostname()]
    files = make_self_signed(config_path.parent, chosen, days=days,
                             common_name=f"crossdock broker {cfg.depot}", overwrite=force)
    click.echo(f"wrote {files.certfile} (for {', '.join(files.hosts)}; valid {days} days)")
    click.echo(f"wrote {files.keyfile} (private key, mode 0600)")
    click.echo(f"add to [broker] in {config_path}, then restart `gateway run` and rewrite each "
               "tablet's file (`gateway devices add ... --agent-config`):")
    click.echo(f"tls_port = {tls_port}")
    click.echo('tls_host = "0.0.0.0"')
    click.echo(f'certfile = "{files.certfile.name}"')
    click.echo(f'keyfile = "{files.keyfile.name}"')
    click.echo(f'public_host = "{files.hosts[0]}"')
    click.echo(f'ca_file = "{files.certfile.name}"')
