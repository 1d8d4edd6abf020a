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
With ``--ui``, driver B's tablet is the Kivy app instead (``crossdock tablet``: its agent and
screens in one process, a desktop window): each step waits a few seconds so the screen can be
watched, and the demo ends when that window is closed.
"""

from __future__ import annotations

import datetime as _dt
import functools
import logging
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

from gateway.config import GatewayConfig, load_config
from gateway.dispatch import load_dispatch_config, send_command
from gateway.errors import GatewayError
from gateway.ingest.mapping import source_mapping
from gateway.ingest.pipeline import ingest_source
from gateway.runner import GatewayRunner
from gateway.setup import check_folder, write_agent_config, write_sample_config
from gateway.store.core import Store
from gateway.store.devices import DeviceStore
from gateway.streams.views import sync_driver
from gateway.writeback.flush import flush_writeback
from sync.host.lock import StoreLock


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


WAIT_S = 60.0
"""How long a step waits for the tablets (a shared 2-core machine under load is slow)."""


def _step(n: int, text: str, pause: float = 0.0) -> None:
    if pause:
        time.sleep(pause)
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


class _Logs:
    """The demo's processes write their output here, in ``<demo folder>/logs``: the gateway
    (this process: ``gateway.log``), each tablet's agent (``<device>.log``) and Mosquitto
    (``broker/mosquitto.log``, as ``gateway run`` has it). A failure names them."""

    def __init__(self, directory: Path, broker_log: Path) -> None:
        self.dir = directory / "logs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.broker_log = broker_log
        self.tablets: dict[str, tuple[Path, subprocess.Popen[bytes]]] = {}
        self._handler = logging.FileHandler(self.dir / "gateway.log", encoding="utf-8")
        self._handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"))
        self._handler.setLevel(logging.INFO)
        root = logging.getLogger()
        self._level = root.level
        for handler in root.handlers:  # the console keeps what it showed before
            if handler.level == logging.NOTSET:
                handler.setLevel(self._level)
        root.setLevel(min(self._level or logging.WARNING, logging.INFO))
        root.addHandler(self._handler)

    def spawn_tablet(self, device: str, config: Path, *,
                     app: bool = False) -> subprocess.Popen[bytes]:
        """The tablet's agent (``agent run``), or with ``app`` the Kivy app (``crossdock
        tablet``: its agent and screens in one process, a window)."""
        log_path = self.dir / f"{device}.log"
        command = (["tablet", "--config", str(config)] if app else
                   ["agent", "run", "--config", str(config), "--verbose", "--every", "2"])
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "crossdock_cli", "--debug", *command],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self.tablets[device] = (log_path, proc)
        return proc

    def check_tablets(self) -> None:
        for device, (log_path, proc) in self.tablets.items():
            code = proc.poll()
            if code is not None:
                raise GatewayError(f"demo: {device}'s agent exited with status {code}: "
                                   f"{_last_line(log_path)} (its log: {log_path})")

    def where(self) -> str:
        names = ", ".join(["gateway.log", *(p.name for p, _ in self.tablets.values())])
        return f"the logs are in {self.dir} ({names}) and {self.broker_log}"

    def close(self) -> None:
        root = logging.getLogger()
        root.removeHandler(self._handler)
        root.setLevel(self._level)
        self._handler.close()


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return lines[-1][-300:] if lines else "(empty log)"


def _wait(what: str, condition: Callable[[], bool], logs: _Logs,
          stream: Callable[[], tuple[int, int]] | None = None, timeout: float = WAIT_S) -> None:
    """Until ``condition()`` (a ``crossdock agent state`` call: seconds of start-up on a busy
    box) holds. With ``stream`` (the tablet's applied and last seq, as the gateway's store has
    them), the tablet's screen is read only once the tablet has applied its whole stream, and
    again only when the stream moved or after 5 s, instead of polling its SQLite through a new
    process back to back."""
    deadline = time.monotonic() + timeout
    checked: int | None = None
    again_at = 0.0
    while time.monotonic() < deadline:
        ready = True
        if stream is not None:
            applied, last = stream()
            ready = applied >= last and (last != checked or time.monotonic() >= again_at)
            if ready:
                checked, again_at = last, time.monotonic() + 5.0
        if ready and condition():
            return
        logs.check_tablets()
        time.sleep(0.2)
    raise GatewayError(f"demo: timed out after {timeout:g} s waiting for {what}; "
                       f"{logs.where()}")


def _stream_of(cfg: GatewayConfig, device: str) -> Callable[[], tuple[int, int]]:
    """The device's applied and last seq, read from the gateway's store."""
    def read() -> tuple[int, int]:
        with Store(cfg.db_path) as store:
            devices = DeviceStore(store)
            return devices.applied(device), devices.bounds(device)[1]

    return read


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


UI_STEP_S = 5.0
"""With ``--ui``, how long each step waits before it begins, so the tablet can be watched."""


def run_demo(directory: Path, *, ui: bool = False) -> None:
    port = _free_port()
    info = write_sample_config(directory, drivers=47, orders=142, seed=1, depot="demo-depot",
                               port=port, now=_now())
    cfg = load_config(Path(info["config"]))
    tablets: list[subprocess.Popen[bytes]] = []
    runner = GatewayRunner(cfg, scheduler=False, status_interval_s=2.0)
    pause = UI_STEP_S if ui else 0.0
    window = None
    logs = _Logs(directory, cfg.path(cfg.broker.data_dir) / "mosquitto.log")
    lock = StoreLock(cfg.db_path, holder="crossdock demo")  # as gateway run holds it
    lock.acquire()
    try:
        _step(1, "The legacy system's nightly FoxPro export is ingested")
        with Store(cfg.db_path) as store:
            for s in ingest_source(store, cfg, cfg.sources[0], now=_now):
                click.echo(f"   {s.source}: {s.rows_read} rows read, {s.rows_changed} orders, "
                           f"{s.rows_quarantined} quarantined, {s.claims} claims")
            for q in store.quarantine():
                click.echo(f"   quarantine: row {q.row} [{q.field}] {q.reason}")
        with Store(cfg.db_path) as store:
            rows = store.source_orders("legacy")
        by_driver: dict[str, list[str]] = {}
        for order_id, vals in rows:
            if vals.get("status") == "planned" and isinstance(vals.get("driver"), str):
                by_driver.setdefault(vals["driver"], []).append(order_id)
        driver_a, driver_b = sorted(by_driver, key=lambda d: (-len(by_driver[d]), d))[:2]
        order = by_driver[driver_a][0]
        # the tablets are registered before the broker starts, so it starts with their
        # credentials (not re-read on a SIGHUP while a tablet may already be connecting)
        configs, devices = {}, {}
        for driver in (driver_a, driver_b):
            device = f"tab-{driver.lower()}"
            password = f"pw-{device}"
            with Store(cfg.db_path) as store:
                with store.transaction():
                    DeviceStore(store).add(device, driver, password, _now())
                sync_driver(store, driver, cfg.merge_policy(), _now())
            path = directory / f"{device}.toml"
            write_agent_config(path, cfg, device=device, driver=driver, password=password,
                               timezone=str(source_mapping(cfg, cfg.sources[0]).zone))
            configs[driver], devices[driver] = path, device
        runner.start()
        # a tablet's first resync published before the gateway subscribed would be lost, and
        # the tablet would ask again only after resync_quiet_s (30 s, as long as a step waited)
        if runner.service is not None and not runner.service.link.wait_connected(WAIT_S):
            raise GatewayError(f"demo: the gateway did not reach its broker within {WAIT_S:g} s;"
                               f" {logs.where()}")
        click.echo(f"   gateway running with a managed Mosquitto on 127.0.0.1:{port} "
                   "(passwords and a per-device ACL)")

        _step(2, f"Tablets for driver {driver_a} and driver {driver_b} come online", pause)
        for driver, path in configs.items():
            app = ui and driver == driver_b  # this one is the Kivy app: agent and screens
            tablets.append(logs.spawn_tablet(path.stem, path, app=app))
            if app:
                window = tablets[-1]
                click.echo(f"   {driver_b}'s tablet opens in a window "
                           f"(log: {logs.dir / (path.stem + '.log')})")
        _wait("driver A's tablet to show its route",
              lambda: _stop_of(_tablet_state(configs[driver_a]), order) is not None, logs,
              _stream_of(cfg, devices[driver_a]))
        click.echo(f"   {driver_a}'s tablet shows {order} (from legacy's 00:00 export)")
        _screen(driver_a, configs[driver_a], order)

        zone = source_mapping(cfg, cfg.sources[0]).zone
        _step(3, f"Dispatch reassigns {order} to {driver_b}, unaware of the export", pause)
        dcfg = load_dispatch_config(Path(info["dispatch_config"]))
        reply = send_command(dcfg, {"action": "assign", "order_id": order, "driver": driver_b})
        click.echo(f"   gateway replied: {'ok' if reply.body.ok else reply.body.reason}")
        for who in (driver_a, driver_b):
            _wait(f"{who}'s tablet to show the conflict",
                  functools.partial(_shows_conflict, configs[who], order), logs,
                  _stream_of(cfg, devices[who]))
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

        _step(4, f"Dispatch resolves: {order} goes to {driver_b}", pause)
        reply = send_command(dcfg, {"action": "resolve", "order_id": order, "field": "driver",
                                    "choose": "dispatch"})
        click.echo(f"   gateway replied: {'ok' if reply.body.ok else reply.body.reason}")
        _wait("driver A's tablet to drop the stop",
              lambda: _stop_of(_tablet_state(configs[driver_a]), order) is None, logs,
              _stream_of(cfg, devices[driver_a]))
        _wait("driver B's tablet to settle",
              lambda: bool((s := _stop_of(_tablet_state(configs[driver_b]), order))
                           and not s["conflicts"]), logs, _stream_of(cfg, devices[driver_b]))
        click.echo(f"   {driver_a}'s tablet: {order} is gone from the route")
        click.echo(f"   {driver_b}'s tablet: {order} assigned to {driver_b} (resolved by dispatch)")

        _step(5, f"{driver_b} delivers {order}; the result is written back for FoxPro", pause)
        proc = _cli("agent", "act", "--config", str(configs[driver_b]), "deliver", order)
        click.echo("   " + " / ".join(proc.stdout.strip().splitlines()))
        with Store(cfg.db_path) as store:
            summary = flush_writeback(store, cfg, _now())
        click.echo(f"   write-back: {summary.written} result(s) to {cfg.path('import')}")

        _step(6, "The next export carries the written-back value", pause)
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
            and s["fields"].get("status", {}).get("value") == "delivered"), logs,
            _stream_of(cfg, devices[driver_b]))
        click.echo(f"   open conflicts: {open_conflicts} — the echo changed nothing")
        _screen(driver_b, configs[driver_b], order)
        click.echo("")
        click.echo(f"Done. Everything is in {directory} (gateway.toml, gateway.sqlite, "
                   "tablet databases, import/).")
        if window is not None:
            if window.poll() is None:
                click.echo(f"{driver_b}'s tablet stays open: close its window to end the demo.")
                window.wait()
            elif window.returncode != 0:
                raise GatewayError(f"demo: the tablet window could not run (exit "
                                   f"{window.returncode}); {logs.where()}")
    finally:
        for proc_ in tablets:
            proc_.terminate()
        for proc_ in tablets:
            try:
                proc_.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc_.kill()
        runner.stop()
        logs.close()
        lock.release()


@click.command()
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=None,
              help="Where to put the demo's files (default: a new temporary folder).")
@click.option("--force", is_flag=True, help="Empty a --dir that holds anything first.")
@click.option("--ui", is_flag=True,
              help="Open driver B's tablet (the Kivy app) in a window while the story plays.")
def demo(directory: Path | None, force: bool, ui: bool) -> None:
    """The conflict story end to end: gateway, managed Mosquitto, two tablets, dispatch."""
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="crossdock-demo-"))
    else:
        check_folder(directory, command="demo --dir", names=None, force=force)
        if force and directory.exists():
            shutil.rmtree(directory)
    run_demo(directory, ui=ui)
