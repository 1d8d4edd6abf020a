"""``crossdock agent``: run the headless tablet agent, show its state, record a driver action.

A thin shell over ``agent.service.Agent`` (the model: sqlite-utils' cli.py): parse, call the
agent, print. Errors are ``AgentError`` (a ``CrossdockError``); the root CLI prints them as one
line and exits 1.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import click

from agent.config import load_config
from agent.model import OutboxItem, RouteStop, SyncStatus, age
from agent.service import Agent
from sync.host.lock import StoreLock
from sync.model import Conflict, canonical

_CONFIG = click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The agent's TOML file (written by `crossdock gateway devices add`).",
)
CLI_ACTIONS = ("arrive", "deliver", "fail", "refuse", "note")


@click.group("agent")
def agent() -> None:
    """The headless tablet agent: sync a driver's route, record actions offline-first."""


@agent.command()
@_CONFIG
@click.option("--verbose", is_flag=True, help="Print a one-line sync status every --every s.")
@click.option("--every", default=10.0, show_default=True, type=click.FloatRange(min=0.1))
def run(config_path: Path, verbose: bool, every: float) -> None:
    """Sync with the gateway until SIGINT or SIGTERM."""
    config = load_config(config_path)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # one agent per tablet store: a second one says who runs and exits 1
        with StoreLock(config.db, holder="agent run"), Agent(config) as running:
            running.start()
            while not stop.wait(every if verbose else 1.0):
                if verbose:
                    click.echo(_status_line(running.sync_status(), _now()))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@agent.command()
@_CONFIG
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def state(config_path: Path, as_json: bool) -> None:
    """Route, conflicts, warnings, outbox, last seq and freshness, read from the tablet's
    SQLite without connecting."""
    config = load_config(config_path)
    now = _now()
    with Agent(config) as offline:
        stops = offline.route()
        conflicts = offline.conflicts()
        pending = offline.pending()
        refused = offline.refused(dismissed=True)
        status = offline.sync_status()
    if as_json:
        doc = {
            "depot": config.depot,
            "device": config.device,
            "driver": config.driver,
            "last_seq": status.last_seq,
            "sync": status.model_dump(mode="json"),
            "route": [_stop_json(stop) for stop in stops],
            "conflicts": [_conflict_json(c, now) for c in conflicts],
            "warnings": [w.model_dump(mode="json") for stop in stops for w in stop.warnings],
            "outbox": [item.model_dump(mode="json") for item in pending],
            # actions the gateway turned down, with its reason; dismissed ones stay, marked
            "refused": [r.model_dump(mode="json") for r in refused],
            "freshness": [
                {**s.model_dump(mode="json"), "age_s": age(s.as_of, now)} for s in status.sources
            ],
        }
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    click.echo(f"{config.device} (driver {config.driver}, depot {config.depot}); "
               f"times in {_zone_name(now)}")
    click.echo(_status_line(status, now))
    _print_route(stops)
    _print_conflicts(conflicts, now)
    _print_outbox(pending)
    shown = [r for r in refused if r.dismissed_at is None]
    if shown:
        click.echo("Refused by the gateway (until dismissed):")
        for r in shown:
            click.echo(f"  {r.order_id:<14} {r.action:<8} {r.reason}")
    if status.sources:
        click.echo("Freshness (as told by the gateway):")
        for s in status.sources:
            when = "unknown" if s.as_of is None else f"as of {_hm(s.as_of)}, {_ago(s.as_of, now)}"
            click.echo(f"  {s.source:<10} {when}")


@agent.command()
@_CONFIG
@click.argument("action", type=click.Choice(CLI_ACTIONS))
@click.argument("order")
@click.option("--reason", default=None, help="Why (fail, refuse).")
@click.option("--note", default=None, help="A free-text note.")
@click.option(
    "--wait",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds to try to reach the broker and get the gateway's ack.",
)
def act(
    config_path: Path, action: str, order: str, reason: str | None, note: str | None, wait: float
) -> None:
    """Record a driver action durably, then send it if the broker is reachable (or hand it to
    the `agent run` of this tablet, which holds its one connection)."""
    config = load_config(config_path)
    deadline = time.monotonic() + wait
    with Agent(config) as tablet:
        event_id = tablet.act(action, order, reason=reason, note=note)
        click.echo(f"recorded {action} {order} (event {event_id})")
        online = acked = False
        if wait > 0:
            tablet.start(follow_stream=False)
            if tablet.handed_over:  # the running agent sends it; its ack reaches the store
                acked = tablet.wait_acked(event_id, max(0.0, deadline - time.monotonic()))
            else:
                online = tablet.wait_online(max(0.0, deadline - time.monotonic()))
                acked = online and tablet.wait_acked(event_id,
                                                     max(0.0, deadline - time.monotonic()))
    if tablet.handed_over:
        click.echo("handed to the running agent for this tablet: "
                   + ("acknowledged by the gateway" if acked
                      else "it sends it when online"))
    elif acked:
        click.echo("sent: acknowledged by the gateway")
    elif online:
        click.echo("sent, not acknowledged yet: will resend on reconnect")
    else:
        click.echo("queued offline: will send on reconnect")


# -- formatting ------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _zone_name(now: datetime) -> str:
    """The tablet's own zone, said once above its times (``_hm`` shows them in it)."""
    local = now.astimezone()
    offset = local.strftime("%z")
    return f"{local.tzname()} (UTC{offset[:3]}:{offset[3:]})"


def _hm(at: datetime) -> str:
    return at.astimezone().strftime("%H:%M")


def _ago(at: datetime | None, now: datetime) -> str:
    seconds = age(at, now)
    if seconds is None:
        return "never"
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.0f} h ago"


def _status_line(status: SyncStatus, now: datetime) -> str:
    if status.online:
        presence = "online" + (f" since {_hm(status.online_since)}" if status.online_since else "")
    else:
        since = status.offline_since
        presence = "offline" + (f" since {_hm(since)}" if since else "")
    return (
        f"{presence}; last seq {status.last_seq}; last sync {_ago(status.last_sync_at, now)}; "
        f"outbox {status.outbox_size}; bad messages {status.codec_errors}"
    )


def _stop_json(stop: RouteStop) -> dict[str, Any]:
    return {
        "order_id": stop.order_id,
        "status": stop.status_shown,
        "hold": stop.hold,
        "fields": {
            name: {"state": fv.state, "value": fv.value} for name, fv in stop.view.fields.items()
        },
        "conflicts": [c.field for c in stop.conflicts],
        "warnings": [w.model_dump(mode="json") for w in stop.warnings],
        "local": [a.model_dump(mode="json") for a in stop.local],
    }


def _conflict_json(conflict: Conflict, now: datetime) -> dict[str, Any]:
    doc = conflict.model_dump(mode="json")
    for candidate, out in zip(conflict.candidates, doc["candidates"], strict=True):
        out["age_s"] = age(candidate.as_of, now)
    return doc


def _print_route(stops: list[RouteStop]) -> None:
    click.echo(f"Route ({len(stops)} stops):")
    for n, stop in enumerate(stops, 1):
        flags = " HOLD: confirm with dispatch" if stop.hold else ""
        fields = ", ".join(c.field for c in stop.conflicts)
        conflict = f"  CONFLICT: {fields}" if fields else ""
        click.echo(f"  {n:>3}. {stop.order_id:<12} {stop.status_shown or '-'}{conflict}{flags}")
        for warning in stop.warnings:
            click.echo(f"       ! {warning.code}: {warning.message}")


def _print_conflicts(conflicts: list[Conflict], now: datetime) -> None:
    if not conflicts:
        return
    click.echo("Conflicts:")
    for c in conflicts:
        click.echo(f"  {c.order_id} {c.field} (open since {_hm(c.opened_at)}):")
        for cand in c.candidates:
            click.echo(
                f"    {cand.source:<10} {canonical(cand.value)}  as of {_hm(cand.as_of)} "
                f"({_ago(cand.as_of, now)})  [{cand.claim_id}]"
            )


def _print_outbox(pending: list[OutboxItem]) -> None:
    if not pending:
        click.echo("Outbox: empty")
        return
    click.echo(f"Outbox ({len(pending)} waiting for the gateway's ack):")
    for item in pending:
        e = item.event
        click.echo(
            f"  {item.event_id}  {e.action} {e.order_id}  recorded {_hm(item.created_at)}, "
            f"sent {item.attempts}x"
        )
