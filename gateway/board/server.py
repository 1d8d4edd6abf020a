"""Serving the board: uvicorn in a thread of ``gateway run`` or in ``crossdock board``.

``BoardServer(cfg)`` binds ``[board] host:port`` (loopback unless a certificate is configured:
``BoardSection`` refuses otherwise) and serves TLS with ``certfile``/``keyfile`` when they are
set. Commands go out as ``crossdock dispatch`` sends them (``load_dispatch_config`` of the
gateway's file: dispatch.toml beside it, or the gateway's own broker settings).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from gateway.board.app import create_app
from gateway.board.commands import Commands, Reply, mqtt_commands
from gateway.board.page import Board
from gateway.config import BoardSection, GatewayConfig
from gateway.dispatch import DispatchConfig, load_dispatch_config
from gateway.errors import ConfigError
from gateway.timefmt import depot_zone

log = logging.getLogger(__name__)


class BoardServer:
    def __init__(self, cfg: GatewayConfig, *, config_path: Path | None = None,
                 commands: Commands | None = None,
                 clock: Callable[[], _dt.datetime] | None = None,
                 port: int | None = None, poll_s: float = 0.2, shadow: bool = False) -> None:
        self.cfg = cfg
        section = cfg.board or BoardSection()
        self.host = section.host
        self.port = section.port if port is None else port
        self.certfile = None if section.certfile is None else cfg.path(section.certfile)
        self.keyfile = None if section.keyfile is None else cfg.path(section.keyfile)
        for path in (self.certfile, self.keyfile):
            if path is not None and not path.is_file():
                raise ConfigError(f"board: cannot read {path}")
        if shadow:  # no broker runs: say so at once instead of waiting for a reply
            commands = _shadow_commands
        elif commands is None:  # as `crossdock dispatch --config gateway.toml` sends them
            commands = mqtt_commands(_dispatch_of(cfg) if config_path is None
                                     else load_dispatch_config(config_path))
        self.board = Board(cfg, zone=depot_zone(cfg), commands=commands, clock=clock,
                           secure=self.certfile is not None, poll_s=poll_s, shadow=shadow)
        self.app = create_app(self.board)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.certfile else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def _config(self) -> uvicorn.Config:
        kwargs: dict[str, Any] = {}
        if self.certfile is not None:
            kwargs = {"ssl_certfile": str(self.certfile), "ssl_keyfile": str(self.keyfile)}
        return uvicorn.Config(self.app, host=self.host, port=self.port, log_level="warning",
                              access_log=False, lifespan="off", timeout_graceful_shutdown=2,
                              **kwargs)

    def _check_port(self) -> None:
        with socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((self.host, self.port))
            except OSError as exc:
                raise ConfigError(f"board: cannot listen on {self.host}:{self.port}: "
                                  f"{exc.strerror}") from None

    def start(self, timeout: float = 10.0) -> None:
        """Serve in a thread (``gateway run``); returns once it listens."""
        self._check_port()
        self.board.hub.start()
        self._server = uvicorn.Server(self._config())
        server = self._server
        self._thread = threading.Thread(target=lambda: asyncio.run(server.serve()),
                                        name="crossdock-board", daemon=True)
        self._thread.start()
        started = threading.Event()
        for _ in range(int(timeout / 0.05)):
            if server.started:
                started.set()
                break
            if not self._thread.is_alive():
                break
            started.wait(0.05)
        if not server.started:
            raise ConfigError(f"board: could not start on {self.host}:{self.port}")
        log.info("dispatch board on %s", self.url)

    def serve_forever(self) -> None:
        """Serve in this thread until SIGINT/SIGTERM (``crossdock board``)."""
        self._check_port()
        self.board.hub.start()
        try:
            uvicorn.Server(self._config()).run()
        finally:
            self.board.hub.stop()

    def stop(self) -> None:
        self.board.hub.end_streams()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.board.hub.stop()


def _shadow_commands(_person: str, _body: dict[str, Any]) -> Reply:
    return Reply(False, "the gateway runs in shadow mode (gateway run --shadow): it sends "
                 "nothing, so the board takes no actions", {})


def _dispatch_of(cfg: GatewayConfig) -> DispatchConfig:
    host, port = cfg.broker.address
    return DispatchConfig(cfg.depot, "dispatch", host, port, cfg.broker.username,
                          cfg.broker.password or None)
