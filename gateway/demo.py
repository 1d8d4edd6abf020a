"""``crossdock demo``: the conflict story end to end, on one machine.

A sample FoxPro export (47 drivers, 142 orders, a few dirty rows), the gateway with a managed
Mosquitto (passwords and per-device ACL), two simulated tablets (``crossdock agent run`` as
separate processes, as on real tablets), and dispatch commands over MQTT:

1. the nightly export is ingested: dirty rows go to quarantine, each with its reason;
2. dispatch reassigns one of driver A's stops to driver B, unaware of the export;
3. both tablets show the conflict: each side, its source, how old it is;
4. dispatch resolves it; both tablets converge;
5. driver B delivers; the result is written back where the legacy system imports it;
6. the next export carries the written-back value: no new conflict, nothing new to send.

The tablets' screens are shown with ``crossdock agent state`` (what a driver would see).
"""

from __future__ import annotations

import datetime as _dt
import functools
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from gateway.config import load_config
from gateway.dispatch import load_dispatch_config, send_command
from gateway.errors import GatewayError
from gateway.ingest.mapping import source_mapping
from gateway.ingest.pipeline import ingest_source
from gateway.runner import GatewayRunner
from gateway.setup import write_agent_config, write_sample_config
from gateway.store.core import Store
from gateway.store.devices import DeviceStore
from gateway.streams.views import sync_driver
from gateway.writeback.flush import flush_writeback


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "age unknown"
    if seconds < 90:
        return f"{seconds:.0f} s old"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min old"
    return f"{seconds / 3600:.1f} h old"


def _step(n: int, text: str) -> None:
    click.echo("")
    click.secho(f"== {n}. {text}", bold=True)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crossdock_cli", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def _screen(name: str, config: Path, order_id: str) -> None:
    """What the tablet shows for one stop (from its own SQLite, like the app)."""
    out = _cli("agent", "state", "--config", str(config)).stdout
    click.echo(f"   [{name}'s tablet]")
    lines = [ln for ln in out.splitlines() if order_id in ln or ln.startswith(("  ", "Conflicts"))]
    shown = [ln for ln in lines if order_id in ln] or ["   (stop not on this route)"]
    for line in shown[:6]:
        click.echo(f"     {line.strip()}")


def _wait(what: str, condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise GatewayError(f"demo: timed out waiting for {what}")


def _tablet_state(config: Path) -> dict[str, Any]:
    import json

    proc = _cli("agent", "state", "--config", str(config), "--json")
    if proc.returncode != 0:
        return {}
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def _stop_of(state: dict[str, Any], order_id: str) -> dict[str, Any] | None:
    return next((s for s in state.get("route", []) if s["order_id"] == order_id), None)


def _shows_conflict(config: Path, order_id: str) -> bool:
    stop = _stop_of(_tablet_state(config), order_id)
    return stop is not None and "driver" in stop["conflicts"]


def _update_export(path: Path, order_id: str, driver: str, status: str) -> None:
    """The legacy system imported the write-back: its next export shows the new values."""
    import dbf

    table = dbf.Table(str(path))
    table.open(dbf.READ_WRITE)
    try:
        for record in table:
            if str(record.ORDER_ID).strip() == order_id:
                with record:
                    record.DRIVER_ID = driver
                    record.STATUS = status
    finally:
        table.close()


def _free_port() -> int:
    """A loopback TCP port that was free a moment ago (the demo's broker listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_demo(directory: Path) -> None:
    port = _free_port()
    info = write_sample_config(directory, drivers=47, orders=142, seed=1, depot="demo-depot",
                               port=port, now=_now())
    cfg = load_config(Path(info["config"]))
    tablets: list[subprocess.Popen[bytes]] = []
    runner = GatewayRunner(cfg, scheduler=False, status_interval_s=2.0)
    try:
        _step(1, "The legacy system's nightly FoxPro export is ingested")
        with Store(cfg.db_path) as store:
            for s in ingest_source(store, cfg, cfg.sources[0], now=_now):
                click.echo(f"   {s.source}: {s.rows_read} rows read, {s.rows_changed} orders, "
                           f"{s.rows_quarantined} quarantined, {s.claims} claims")
            for q in store.quarantine():
                click.echo(f"   quarantine: row {q.row} [{q.field}] {q.reason}")
        runner.start()
        click.echo(f"   gateway running with a managed Mosquitto on 127.0.0.1:{port} "
                   "(passwords and a per-device ACL)")
        with Store(cfg.db_path) as store:
            rows = store.source_orders("legacy")
        by_driver: dict[str, list[str]] = {}
        for order_id, vals in rows:
            if vals.get("status") == "planned" and isinstance(vals.get("driver"), str):
                by_driver.setdefault(vals["driver"], []).append(order_id)
        driver_a, driver_b = sorted(by_driver, key=lambda d: (-len(by_driver[d]), d))[:2]
        order = by_driver[driver_a][0]

        _step(2, f"Tablets for driver {driver_a} and driver {driver_b} come online")
        configs = {}
        for driver in (driver_a, driver_b):
            device = f"tab-{driver.lower()}"
            password = f"pw-{device}"
            with Store(cfg.db_path) as store:
                with store.transaction():
                    DeviceStore(store).add(device, driver, password, _now())
                sync_driver(store, driver, cfg.merge_policy(), _now())
            path = directory / f"{device}.toml"
            write_agent_config(path, cfg, device=device, driver=driver, password=password)
            configs[driver] = path
        runner.check()  # the broker learns the new devices' credentials
        if runner.service is not None:
            runner.service.request_refresh("demo")
        for path in configs.values():
            tablets.append(subprocess.Popen(
                [sys.executable, "-m", "crossdock_cli", "agent", "run", "--config", str(path)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait("driver A's tablet to show its route",
              lambda: _stop_of(_tablet_state(configs[driver_a]), order) is not None)
        click.echo(f"   {driver_a}'s tablet shows {order} (from legacy's 00:00 export)")
        _screen(driver_a, configs[driver_a], order)

        zone = source_mapping(cfg, cfg.sources[0]).zone
        _step(3, f"Dispatch reassigns {order} to {driver_b}, unaware of the export")
        dcfg = load_dispatch_config(Path(info["dispatch_config"]))
        reply = send_command(dcfg, {"action": "assign", "order_id": order, "driver": driver_b})
        click.echo(f"   gateway replied: {'ok' if reply.body.ok else reply.body.reason}")
        for who in (driver_a, driver_b):
            _wait(f"{who}'s tablet to show the conflict",
                  functools.partial(_shows_conflict, configs[who], order))
        click.echo("   Neither side is followed silently. Both tablets show the conflict:")
        for driver in (driver_a, driver_b):
            state = _tablet_state(configs[driver])
            conflict = next(c for c in state["conflicts"] if c["order_id"] == order)
            sides = "; ".join(
                f"{c['source']} says {c['value']} (as of "
                f"{_dt.datetime.fromisoformat(c['as_of']).astimezone(zone):%H:%M}, "
                f"{_age(c['age_s'])})" for c in conflict["candidates"])
            click.echo(f"   [{driver}'s tablet] {order} driver: {sides}")
        with Store(cfg.db_path) as store:
            click.echo(f"   gateway: {len(store.conflict_views())} open conflict(s) "
                       "(crossdock gateway conflicts --json)")

        _step(4, f"Dispatch resolves: {order} goes to {driver_b}")
        reply = send_command(dcfg, {"action": "resolve", "order_id": order, "field": "driver",
                                    "choose": "dispatch"})
        click.echo(f"   gateway replied: {'ok' if reply.body.ok else reply.body.reason}")
        _wait("driver A's tablet to drop the stop",
              lambda: _stop_of(_tablet_state(configs[driver_a]), order) is None)
        _wait("driver B's tablet to settle",
              lambda: bool((s := _stop_of(_tablet_state(configs[driver_b]), order))
                           and not s["conflicts"]))
        click.echo(f"   {driver_a}'s tablet: {order} is gone from the route")
        click.echo(f"   {driver_b}'s tablet: {order} assigned to {driver_b} (resolved by dispatch)")

        _step(5, f"{driver_b} delivers {order}; the result is written back for FoxPro")
        proc = _cli("agent", "act", "--config", str(configs[driver_b]), "deliver", order)
        click.echo("   " + " / ".join(proc.stdout.strip().splitlines()))
        with Store(cfg.db_path) as store:
            summary = flush_writeback(store, cfg, _now())
        click.echo(f"   write-back: {summary.written} result(s) to {cfg.path('import')}")

        _step(6, "The next export carries the written-back value")
        _update_export(Path(info["paths"]["orders"]), order, driver_b, "DELIVERED")
        with Store(cfg.db_path) as store:
            for s in ingest_source(store, cfg, cfg.sources[0], now=_now):
                click.echo(f"   {s.source}: {s.status}, {s.rows_changed} order(s) changed, "
                           f"{s.claims} claim(s)")
            open_conflicts = len(store.conflict_views())
        if runner.service is not None:
            runner.service.request_refresh("demo")
        _wait("driver B's tablet to show delivered", lambda: bool(
            (s := _stop_of(_tablet_state(configs[driver_b]), order))
            and s["fields"].get("status", {}).get("value") == "delivered"))
        click.echo(f"   open conflicts: {open_conflicts} — the echo changed nothing")
        _screen(driver_b, configs[driver_b], order)
        click.echo("")
        click.echo(f"Done. Everything is in {directory} (gateway.toml, gateway.sqlite, "
                   "tablet databases, import/).")
    finally:
        for proc_ in tablets:
            proc_.terminate()
        for proc_ in tablets:
            try:
                proc_.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc_.kill()
        runner.stop()


@click.command()
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=None,
              help="Where to put the demo's files (default: a new temporary folder).")
def demo(directory: Path | None) -> None:
    """The conflict story end to end: gateway, managed Mosquitto, two tablets, dispatch."""
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="crossdock-demo-"))
    elif directory.exists() and any(directory.iterdir()):
        if not (directory / "gateway.toml").exists():
            raise GatewayError(f"demo: {directory} is not empty and not a demo folder")
        shutil.rmtree(directory)
    run_demo(directory)
