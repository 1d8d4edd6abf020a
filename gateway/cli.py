"""The ``crossdock gateway`` and ``crossdock dispatch`` commands (DESIGN §8).

Thin: parse, call the library, print a summary or ``--json``. Errors are crossdock errors; the
root command turns them into one line on stderr and exit 1.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import click

from gateway.broker.tls import make_self_signed
from gateway.config import GatewayConfig, load_config
from gateway.errors import ConfigError
from gateway.setup import (
    check_agent_config,
    check_agent_file,
    check_driver,
    init_dir,
    write_agent_config,
    write_sample_config,
)
from gateway.store.core import Store
from gateway.store.devices import DeviceStore
from gateway.streams.status import broker_link, source_freshness
from gateway.timefmt import depot_zone, local, zone_line
from gateway.writeback.flush import flush_writeback
from sync.host.lock import StoreLock


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def _emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def _age(iso: str | None, now: _dt.datetime) -> str:
    if not iso:
        return "never"
    seconds = max(0.0, (now - _dt.datetime.fromisoformat(iso)).total_seconds())
    if seconds < 90:
        return f"{seconds:.0f} s old"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min old"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h old"
    return f"{seconds / 86400:.1f} days old"


config_option = click.option(
    "--config", "config_path", type=click.Path(path_type=Path), default="gateway.toml",
    show_default=True, help="The gateway's TOML file.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _open(config_path: Path) -> tuple[GatewayConfig, Store]:
    cfg = load_config(config_path)
    return cfg, Store(cfg.db_path)


@click.group()
def gateway() -> None:
    """The depot gateway: legacy sources, quarantine, conflicts, devices, MQTT."""


# --- set-up ------------------------------------------------------------------------------


@gateway.command()
@click.option("--dir", "directory", type=click.Path(path_type=Path), required=True)
@click.option("--depot", default="depot-1", show_default=True)
@click.option("--port", default=1883, show_default=True, help="Managed Mosquitto's port.")
@click.option("--force", is_flag=True, help="Replace the files of a depot already in DIR.")
def init(directory: Path, depot: str, port: int, force: bool) -> None:
    """Write gateway.toml, an example mapping, the store and dispatch.toml into DIR."""
    written = init_dir(directory, depot=depot, port=port, now=_now(), force=force)
    for path in written:
        click.echo(f"wrote {path}")


@gateway.command()
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
                               port=port, now=_now(), force=force)
    if as_json:
        _emit(info)
        return
    counts = info["counts"]
    click.echo(f"wrote {counts['orders']} orders for {counts['drivers']} drivers to "
               f"{info['paths']['orders']} ({len(info['dirty'])} dirty rows on purpose)")
    click.echo(f"config: {info['config']}")
    click.echo(f"next: crossdock gateway ingest --config {info['config']}")


@gateway.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--encoding", default=None, help="Code page when the file carries none.")
@click.option("--rows", default=5, show_default=True, help="Decoded rows to show.")
@json_option
def inspect(file: Path, encoding: str | None, rows: int, as_json: bool) -> None:
    """What a DBF or CSV export holds: version, code page, fields, counts, a few rows."""
    from gateway.ingest.inspect import inspect_file  # dbfread: +22 ms to every command

    info = inspect_file(file, encoding=encoding, sample=rows)
    if as_json:
        _emit(info)
        return
    for key, value in info.items():
        if key in ("fields", "rows", "sample"):
            continue
        click.echo(f"{key}: {value}")
    for field in info.get("fields", []):
        click.echo(f"  field {field}")
    for row in info.get("rows", info.get("sample", [])):
        click.echo(f"  row {row}")


# --- ingest and what it found ---------------------------------------------------------------


_PHASES = {"read": "read+validate", "diff": "diff+commit", "merge": "merge"}


class _PhaseBars:
    """One click progress bar per phase of a source's run (read+validate, diff+commit, then
    the merge), each with its total, percentage, rate and time left; on a terminal only
    (click draws nothing when stderr is not one, and ``--json`` never asks for bars)."""

    def __init__(self, name: str, *, draw: bool, seconds: dict[str, float]) -> None:
        """``seconds``: each phase's wall time is added there (``--json`` reports it)."""
        import time

        self.name = name
        self.draw = draw
        self.seconds = seconds
        self.phase: str | None = None
        self.bar: Any = None
        self.pos = 0
        self.started = time.monotonic()  # the first phase starts with the run

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        import time

        if phase != self.phase:
            self.close()
            self.phase = phase
            self.pos = 0
            if not self.draw:
                return
            self.bar = click.progressbar(
                length=max(total or 0, done, 1), label=f"{self.name}: {_PHASES[phase]}",
                file=sys.stderr, show_eta=True, show_percent=True, show_pos=True,
                item_show_func=lambda text: text)
            self.bar.__enter__()
        if self.bar is None:
            return
        if total and total > self.bar.length:
            self.bar.length = total
        step = max(0, min(done, self.bar.length) - self.pos)
        self.pos += step
        elapsed = max(time.monotonic() - self.started, 1e-6)
        self.bar.update(step, current_item=f"{done / elapsed:,.0f}/s")

    def close(self) -> None:
        import time

        now = time.monotonic()
        if self.phase is not None:
            self.seconds[self.phase] = self.seconds.get(self.phase, 0.0) + now - self.started
        self.started = now
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


EXIT_SUSPECT = 3
"""``gateway ingest``: an export was held as suspect (nothing of it applied)."""
EXIT_DEGRADED = 4
"""``gateway ingest``: a run was applied, but most of its rows were quarantined or none read."""


@gateway.command()
@config_option
@click.option("--source", "source_name", default=None, help="Run only this source.")
@click.option("--accept", "accept", type=int, default=None, metavar="RUN",
              help="Apply the held (suspect) run RUN, re-reading its unchanged export.")
@click.option("--by", "actor", default=None,
              help="Who accepts (recorded in the audit log; default: the login name).")
@json_option
def ingest(config_path: Path, source_name: str | None, accept: int | None, actor: str | None,
           as_json: bool) -> None:
    """One pass over the sources: read, validate, quarantine, diff to claims, merge.

    Exit 0: applied; 1: a source failed; 3: an export was held as suspect (nothing of it
    applied; accept it with --accept RUN); 4: degraded (most rows quarantined, or none read).
    """
    import getpass

    # the pipeline +63 ms to every command (adapters, validation), views +19 ms
    from gateway.ingest.pipeline import ingest_source
    from gateway.store.runs import held
    from gateway.streams.views import refresh

    cfg, store = _open(config_path)
    sources = [cfg.source(source_name)] if source_name else list(cfg.sources)
    if not sources:
        raise ConfigError(f"config {config_path}: no [[sources]] configured")
    show = sys.stderr.isatty() and not as_json
    results = []
    with store:
        if accept is not None:
            holding = [s for s in sources if (h := held(store, s.claim_source)) is not None
                       and h.run_id == accept]
            if not holding:
                raise ConfigError(f"run {accept} is not a held (suspect) run of "
                                  + (f"source {source_name!r}" if source_name else "any source")
                                  + "; `crossdock gateway sources` lists the held runs")
            sources = holding[:1]
        seconds: dict[str, float] = {}
        for src in sources:
            bars = _PhaseBars(src.name, draw=show, seconds=seconds)
            try:
                summaries = ingest_source(store, cfg, src, now=_now, progress=bars,
                                          accept=accept,
                                          actor=actor or (getpass.getuser() if accept else None))
            finally:
                bars.close()
            results.extend(summaries)
        merging = _PhaseBars("views", draw=show, seconds=seconds)
        merging("merge", 0, None)
        try:
            entries = refresh(store, cfg.merge_policy(), _now(),
                              on_progress=lambda n, total: merging("merge", n, total))
        finally:
            merging.close()
        conflicts = len(store.conflict_views())
    statuses = {r.status for r in results}
    if as_json:
        _emit({"runs": [r.as_dict() for r in results], "open_conflicts": conflicts,
               "stream_entries": sum(len(v) for v in entries.values()),
               "phases_s": {k: round(v, 3) for k, v in seconds.items()}})
    else:
        for r in results:
            line = (f"{r.source}: {r.status}" + (f" {r.location}" if r.location else "")
                    + (f" — {r.rows_read} rows read, {r.rows_changed} changed, "
                       f"{r.rows_quarantined} quarantined, {r.rows_deleted} deleted, "
                       f"{r.claims} claims" if r.status in ("ok", "partial", "degraded")
                       else ""))
            if r.held:
                line += (f" — {r.held['rows_read']} rows read, would withdraw "
                         f"{r.held['withdraw']} of {r.held['live']} live orders")
            if r.error:
                line += f" — {r.error}"
            click.echo(line)
        click.echo(f"open conflicts: {conflicts}")
    if "failed" in statuses:
        sys.exit(1)
    if "suspect" in statuses:
        sys.exit(EXIT_SUSPECT)
    if "degraded" in statuses:
        sys.exit(EXIT_DEGRADED)


@gateway.command()
@config_option
@json_option
def sources(config_path: Path, as_json: bool) -> None:
    """Per-source freshness: as_of, cadence, last run, rows read/changed/quarantined, errors."""
    cfg, store = _open(config_path)
    with store:
        rows = source_freshness(store, cfg)
        link = broker_link(store)
    if as_json:
        if link is not None:  # the broker as gateway run last saw it, a row of kind "broker"
            rows.append({"name": "broker", "source": "broker", "kind": "broker",
                         "mode": link["state"], "url": link["url"], "since": link["since"],
                         "last_error": link["problem"]})
        _emit(rows)
        return
    now = _now()
    zone = depot_zone(cfg)
    click.echo(zone_line(zone, now))  # every time below is in the depot's zone
    if link is not None:
        state = link["state"].upper() if link["state"] != "connected" else "connected"
        click.echo(f"broker {link['url']}: {state} since {local(link['since'], zone)}"
                   + (f": {link['problem']}" if link["problem"] else "")
                   + " (as gateway run last recorded it)")
    for r in rows:
        click.echo(
            f"{r['name']} ({r['kind']}, {r['mode']}): as of "
            f"{local(r['as_of'], zone) if r['as_of'] else 'never'} "
            f"({_age(r['as_of'], now)}), cadence {r['cadence'] or 'none'}, last run "
            f"{r['last_run_status'] or 'never'} at {local(r['last_run_at'], zone)}: "
            f"{r['rows_read']} read, {r['rows_changed']} changed, {r['rows_quarantined']} "
            f"quarantined" + (f"; last error: {r['last_error']}" if r["last_error"] else "")
            if r["status"] != "suspect" else
            f"{r['name']} ({r['kind']}, {r['mode']}): SUSPECT — {r['last_error']}"
        )


@gateway.command()
@config_option
@click.option("--all", "include_closed", is_flag=True, help="Include closed (re-tried) rows.")
@json_option
def quarantine(config_path: Path, include_closed: bool, as_json: bool) -> None:
    """Rows refused by validation, with source, file, row, field, raw value and reason."""
    _cfg, store = _open(config_path)
    with store:
        rows = store.quarantine(include_closed=include_closed)
    if as_json:
        _emit([r.__dict__ for r in rows])
        return
    for r in rows:
        click.echo(f"{r.source} {r.location} row {r.row} [{r.field}] {r.reason} "
                   f"(raw {r.raw!r})")
    click.echo(f"{len(rows)} quarantined field(s)")


@gateway.command()
@config_option
@json_option
def conflicts(config_path: Path, as_json: bool) -> None:
    """Open conflicts: every candidate with its source, value, as_of and age."""
    _cfg, store = _open(config_path)
    now = _now()
    with store:
        views = store.conflict_views()
    found = [c for v in views for c in v.conflicts()]
    if as_json:
        _emit([
            {**c.model_dump(mode="json"),
             "candidates": [{**k.model_dump(mode="json"),
                             "age_s": round((now - k.as_of).total_seconds())}
                            for k in c.candidates]}
            for c in found
        ])
        return
    zone = depot_zone(_cfg)
    click.echo(zone_line(zone, now))  # every time below is in the depot's zone
    for c in found:
        sides = "; ".join(f"{k.source} says {k.value!r} (as of {local(k.as_of, zone)}, "
                          f"{_age(k.as_of.isoformat(), now)})" for k in c.candidates)
        hold = " — ESCALATED, stop on hold" if c.escalated else ""
        click.echo(f"{c.order_id} {c.field}: {sides}{hold}")
    click.echo(f"{len(found)} open conflict(s)")


@gateway.command()
@config_option
@click.option("--open", "only_open", is_flag=True, help="Only those not dismissed yet.")
@json_option
def refused(config_path: Path, only_open: bool, as_json: bool) -> None:
    """Driver events the gateway kept but did not apply, with device, driver, order, action,
    reason and time; a result for an order that moved to another driver is a moved_result."""
    cfg, store = _open(config_path)
    with store:
        events = DeviceStore(store).refused_events()
    if only_open:
        events = [e for e in events if e.dismissed_at is None]
    if as_json:
        _emit([e.__dict__ for e in events])
        return
    zone = depot_zone(cfg)
    click.echo(zone_line(zone, _now()))
    for e in events:
        kind = "RESULT FOR A MOVED ORDER" if e.kind == "moved_result" else "refused"
        seen = f"; dismissed {local(e.dismissed_at, zone)}" if e.dismissed_at else ""
        click.echo(f"{local(e.at, zone)} {e.device} (driver {e.driver}) {e.action} {e.order_id}"
                   f": {kind}: {e.reason}{seen}")
    moved = sum(1 for e in events if e.kind == "moved_result")
    click.echo(f"{len(events)} refused event(s), {moved} result(s) for moved orders")


@gateway.command()
@config_option
@json_option
def writeback(config_path: Path, as_json: bool) -> None:
    """Write pending driver results where the legacy system imports them (once each)."""
    cfg, store = _open(config_path)
    with store:
        summary = flush_writeback(store, cfg, _now())
    if as_json:
        _emit(summary.as_dict())
    else:
        click.echo(f"write-back ({summary.kind}) to {summary.target}: {summary.pending} pending, "
                   f"{summary.written} rows written, {summary.marked} marked written")
        for line in summary.refused:
            click.echo(f"refused {line}", err=True)
    if summary.refused:
        sys.exit(1)


@gateway.command("tls-cert")
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
    import socket

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


# --- devices -----------------------------------------------------------------------------


@gateway.group()
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
    from sync.topics import check_segment

    check_segment(device, "device")
    cfg, store = _open(config_path)
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
            DeviceStore(store).add(device, driver, password, _now())
            store.audit(_now(), _who(), "device-add", device=device, driver=driver)
        sync_driver(store, driver, cfg.merge_policy(), _now())
        _apply(cfg, store)
    click.echo(f"device {device} bound to driver {driver}")
    if agent_config is not None:
        assert password is not None  # issued above for every --agent-config
        written = write_agent_config(agent_config, cfg, device=device, driver=driver,
                                     password=password)
        click.echo(f"wrote {agent_config} (keep it private: it holds the device's credential)")
        for extra in written[1:]:
            click.echo(f"wrote {extra} (the certificate the tablet trusts; copy it with the "
                       "config)")


def _who() -> str:
    """Who ran a command, for the audit log: ``cli:`` and the OS account."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid-{os.getuid()}"


def _apply(cfg: GatewayConfig, store: Store) -> None:
    """Make a registry change take effect: the broker's files rewritten from the store, and a
    running ``gateway run`` told (SIGUSR1: it reloads the broker and drops what must go)."""
    from gateway.runner import tell_running_gateway, write_broker_files

    write_broker_files(cfg, store)
    pid = tell_running_gateway(cfg)
    if pid is not None:
        click.echo(f"the running gateway (pid {pid}) applies it now")
    else:
        click.echo("no gateway runs here: it applies it when it starts (a running one checks "
                   "every 5 s)")


@devices.command("revoke")
@click.argument("device")
@config_option
def devices_revoke(device: str, config_path: Path) -> None:
    """Revoke DEVICE at once: its broker identity, live connection, session and stream go;
    anything it still sends is refused and counted. `rotate` gives it a new credential."""
    cfg, store = _open(config_path)
    with store:
        with store.transaction():
            DeviceStore(store).revoke(device, _now())
            store.audit(_now(), _who(), "device-revoke", device=device)
        _apply(cfg, store)
    click.echo(f"device {device} revoked")


@devices.command("rotate")
@click.argument("device")
@click.option("--agent-config", "agent_config", type=click.Path(path_type=Path), required=True,
              help="Write the tablet's new config file here.")
@config_option
def devices_rotate(device: str, agent_config: Path, config_path: Path) -> None:
    """Issue DEVICE a new credential (its config file at OUT); the old one stops working and
    its connection and session are dropped. A revoked device is active again."""
    cfg, store = _open(config_path)
    check_agent_config(cfg)
    password = secrets.token_urlsafe(18)
    with store:
        with store.transaction():
            found = DeviceStore(store).rotate(device, password, _now())
            store.audit(_now(), _who(), "device-rotate", device=device)
        written = write_agent_config(agent_config, cfg, device=device, driver=found.driver,
                                     password=password)
        _apply(cfg, store)
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
    from gateway.streams.views import sync_driver

    cfg, store = _open(config_path)
    with store:
        with store.transaction():
            old = DeviceStore(store).get(device)
            found = DeviceStore(store).bind(device, driver, _now())
            store.audit(_now(), _who(), "device-bind", device=device, driver=driver,
                        previous=None if old is None else old.driver)
        sync_driver(store, driver, cfg.merge_policy(), _now())
        _apply(cfg, store)
    click.echo(f"device {device} bound to driver {found.driver}")


@devices.command("list")
@config_option
@json_option
def devices_list(config_path: Path, as_json: bool) -> None:
    """Registered devices: driver, state (active/revoked), last change, stream positions,
    when each last acknowledged its stream (``acked_at``, and its age in seconds), presence."""
    _cfg, store = _open(config_path)
    now = _now()
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
        _emit(rows)
        return
    for r in rows:
        online = (r["status"] or {}).get("online")
        state = "REVOKED" if r["state"] == "revoked" else ("online" if online else "offline")
        click.echo(f"{r['device']}: driver {r['driver']}, seq {r['applied_seq']}/{r['last_seq']}"
                   f", last stream ack {_age(r['acked_at'], now)}, {state}")


# --- running -----------------------------------------------------------------------------


@gateway.command()
@config_option
@click.option("--no-scheduler", is_flag=True, help="Serve MQTT only; ingest with `ingest`.")
@click.option("--shadow", is_flag=True,
              help="Ingest and merge, record what tablets would get; start no broker, send "
                   "nothing (read it with `gateway report`).")
def run(config_path: Path, no_scheduler: bool, shadow: bool) -> None:
    """Run the gateway: managed Mosquitto (unless broker.url is set), MQTT, the scheduler,
    and the dispatch board when [board] is configured."""
    import signal
    import threading

    from gateway.private import write_private
    from gateway.runner import (  # the service, paho, apscheduler: +131 ms
        GatewayRunner,
        exposed_secrets,
        pid_file,
    )
    from gateway.shadow import ShadowRunner

    cfg = load_config(config_path)
    warning = exposed_secrets(cfg, config_path)
    if warning:
        click.echo(f"crossdock: warning: {warning}", err=True)
    # one gateway per store: a second one says who runs and exits 1 (the kernel drops the lock
    # when this process ends, however it ends)
    lock = StoreLock(cfg.db_path, holder="gateway run --shadow" if shadow else "gateway run")
    runner: GatewayRunner | ShadowRunner
    if shadow:
        if no_scheduler:
            raise ConfigError("--shadow ingests on the scheduler: drop --no-scheduler")
        lock.acquire()
        runner = ShadowRunner(cfg)
    else:
        lock.acquire()
        runner = GatewayRunner(cfg, scheduler=not no_scheduler)
    board = None
    if cfg.board is not None:
        from gateway.board.server import BoardServer

        board = BoardServer(cfg, config_path=config_path, shadow=shadow)
    stopped = threading.Event()

    def _stop(_sig: int, _frame: object) -> None:
        stopped.set()
        runner.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if isinstance(runner, GatewayRunner):
        gw = runner
        signal.signal(signal.SIGUSR1, lambda _sig, _frame: gw.wake())
    else:  # no broker to reload; a stale pid file's SIGUSR1 must not end the run
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    # a shadow run writes no pid file: `gateway devices` has no broker of it to tell
    pid = pid_file(cfg) if isinstance(runner, GatewayRunner) else None
    try:
        runner.start()
        if pid is not None:
            write_private(pid, f"{os.getpid()}\n")
        if board is not None:
            board.start()
            click.echo(f"dispatch board on {board.url}", err=True)
        if isinstance(runner, ShadowRunner):
            click.echo(f"gateway for depot {cfg.depot} in SHADOW mode: ingesting and merging, "
                       "sending nothing to tablets; Ctrl-C stops it", err=True)
            while not stopped.wait(5):
                pass
        else:
            where = cfg.broker.url or f"managed mosquitto on {runner.host}:{runner.port}"
            click.echo(f"gateway for depot {cfg.depot} running ({where}); Ctrl-C stops it",
                       err=True)
            runner.run_forever()
    finally:
        if board is not None:
            board.stop()
        runner.stop()
        if pid is not None:
            pid.unlink(missing_ok=True)
        lock.release()


def _board_commands() -> None:
    from gateway.board.cli import proposals, report, users

    gateway.add_command(users)
    gateway.add_command(proposals)
    gateway.add_command(report)


_board_commands()
