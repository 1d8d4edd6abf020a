"""The listings of what ingest and the tablets left: ``gateway sources``, ``quarantine``,
``conflicts``, ``refused``; each with ``--json``."""

from __future__ import annotations

from pathlib import Path

import click

from gateway.cli.common import age_text, config_option, emit, json_option, open_depot, utc_now
from gateway.store.devices import DeviceStore
from gateway.streams.status import broker_link, source_freshness
from gateway.timefmt import depot_zone, local, zone_line


@click.command()
@config_option
@json_option
def sources(config_path: Path, as_json: bool) -> None:
    """Per-source freshness: as_of, cadence, last run, rows read/changed/quarantined, errors."""
    cfg, store = open_depot(config_path)
    with store:
        rows = source_freshness(store, cfg)
        link = broker_link(store)
    if as_json:
        if link is not None:  # the broker as gateway run last saw it, a row of kind "broker"
            rows.append({"name": "broker", "source": "broker", "kind": "broker",
                         "mode": link["state"], "url": link["url"], "since": link["since"],
                         "last_error": link["problem"]})
        emit(rows)
        return
    now = utc_now()
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
            f"({age_text(r['as_of'], now)}), cadence {r['cadence'] or 'none'}, last run "
            f"{r['last_run_status'] or 'never'} at {local(r['last_run_at'], zone)}: "
            f"{r['rows_read']} read, {r['rows_changed']} changed, {r['rows_quarantined']} "
            f"quarantined" + (f"; last error: {r['last_error']}" if r["last_error"] else "")
            if r["status"] != "suspect" else
            f"{r['name']} ({r['kind']}, {r['mode']}): SUSPECT — {r['last_error']}"
        )


@click.command()
@config_option
@click.option("--all", "include_closed", is_flag=True, help="Include closed (re-tried) rows.")
@json_option
def quarantine(config_path: Path, include_closed: bool, as_json: bool) -> None:
    """Rows refused by validation, with source, file, row, field, raw value and reason."""
    _cfg, store = open_depot(config_path)
    with store:
        rows = store.quarantine(include_closed=include_closed)
    if as_json:
        emit([r.__dict__ for r in rows])
        return
    for r in rows:
        click.echo(f"{r.source} {r.location} row {r.row} [{r.field}] {r.reason} "
                   f"(raw {r.raw!r})")
    click.echo(f"{len(rows)} quarantined field(s)")


@click.command()
@config_option
@json_option
def conflicts(config_path: Path, as_json: bool) -> None:
    """Open conflicts: every candidate with its source, value, as_of and age."""
    _cfg, store = open_depot(config_path)
    now = utc_now()
    with store:
        views = store.conflict_views()
    found = [c for v in views for c in v.conflicts()]
    if as_json:
        emit([
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
                          f"{age_text(k.as_of.isoformat(), now)})" for k in c.candidates)
        hold = " — ESCALATED, stop on hold" if c.escalated else ""
        click.echo(f"{c.order_id} {c.field}: {sides}{hold}")
    click.echo(f"{len(found)} open conflict(s)")


@click.command()
@config_option
@click.option("--open", "only_open", is_flag=True, help="Only those not dismissed yet.")
@json_option
def refused(config_path: Path, only_open: bool, as_json: bool) -> None:
    """Driver events the gateway kept but did not apply, with device, driver, order, action,
    reason and time; a result for an order that moved to another driver is a moved_result."""
    cfg, store = open_depot(config_path)
    with store:
        events = DeviceStore(store).refused_events()
    if only_open:
        events = [e for e in events if e.dismissed_at is None]
    if as_json:
        emit([e.__dict__ for e in events])
        return
    zone = depot_zone(cfg)
    click.echo(zone_line(zone, utc_now()))
    for e in events:
        kind = "RESULT FOR A MOVED ORDER" if e.kind == "moved_result" else "refused"
        seen = f"; dismissed {local(e.dismissed_at, zone)}" if e.dismissed_at else ""
        click.echo(f"{local(e.at, zone)} {e.device} (driver {e.driver}) {e.action} {e.order_id}"
                   f": {kind}: {e.reason}{seen}")
    moved = sum(1 for e in events if e.kind == "moved_result")
    click.echo(f"{len(events)} refused event(s), {moved} result(s) for moved orders")
