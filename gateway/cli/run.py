"""``gateway run``: the gateway itself (or ``--shadow``), until SIGTERM or Ctrl-C."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import click

from gateway.cli.common import config_option
from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.private import write_private
from sync.host.lock import StoreLock


@click.command()
@config_option
@click.option("--no-scheduler", is_flag=True, help="Serve MQTT only; ingest with `ingest`.")
@click.option("--shadow", is_flag=True,
              help="Ingest and merge, record what tablets would get; start no broker, send "
                   "nothing (read it with `gateway report`).")
def run(config_path: Path, no_scheduler: bool, shadow: bool) -> None:
    """Run the gateway: managed Mosquitto (unless broker.url is set), MQTT, the scheduler,
    and the dispatch board when [board] is configured."""
    # kept out of every other command: the service, paho, apscheduler +131 ms (idle box;
    # 310-410 ms on the loaded 2-core one, python -X importtime after gateway.cli); the
    # shadow runner +20-40 ms more (loaded)
    from gateway.runner import GatewayRunner, exposed_secrets, pid_file
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
