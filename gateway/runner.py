"""``crossdock gateway run``: the managed broker, the MQTT service and the scheduler together.

``GatewayRunner`` starts Mosquitto (unless ``broker.url`` names a running broker) with users
and ACL from the device registry, the gateway service, and the scheduler (each source is read
once at start, then on its own cron or interval), and supervises them:
a broker that dies is restarted, and a device added with ``gateway devices add`` while the
gateway runs gets its credential and ACL on the next check (the broker re-reads them on
SIGHUP). With ``tls_port``, ``certfile`` and ``keyfile`` in ``[broker]`` the managed broker
also has a TLS listener for the tablets (``broker_settings``).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import TYPE_CHECKING

from pydantic import ValidationError

from gateway.broker.conf import BrokerSettings, BrokerUser, write_config
from gateway.broker.process import ManagedBroker
from gateway.config import GatewayConfig
from gateway.errors import ConfigError, StoreError
from gateway.setup import dispatch_password
from gateway.store.core import Store
from gateway.store.devices import DeviceStore
from gateway.streams.service import Clock, GatewayService, utc_now

if TYPE_CHECKING:
    from gateway.scheduler import GatewayScheduler

log = logging.getLogger(__name__)


def broker_users(cfg: GatewayConfig, store: Store) -> list[BrokerUser]:
    """The gateway, the dispatch console (dispatch.toml) and every registered device."""
    users = [BrokerUser.model_validate({"username": cfg.broker.username,
                                        "password": cfg.broker.password or "-",
                                        "role": "gateway"})]
    password = dispatch_password(cfg)
    if password:
        users.append(BrokerUser.model_validate({"username": "dispatch", "password": password,
                                                "role": "dispatch"}))
    for device in DeviceStore(store).all():
        users.append(BrokerUser.model_validate({"username": device.device,
                                                "password": device.password,
                                                "role": "device", "device": device.device}))
    return users


def broker_settings(cfg: GatewayConfig) -> BrokerSettings:
    """The managed Mosquitto's settings from ``[broker]``: the plain listener on ``host`` and,
    when configured, the TLS listener for the tablets (files relative to gateway.toml)."""
    b = cfg.broker
    try:
        return BrokerSettings(
            data_dir=cfg.path(b.data_dir),
            host=b.host, port=b.port,
            max_queued_messages=b.max_queued_messages,
            tls_port=b.tls_port, tls_host=b.tls_host,
            certfile=None if b.certfile is None else cfg.path(b.certfile),
            keyfile=None if b.keyfile is None else cfg.path(b.keyfile),
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"broker{'.' + where if where else ''}: {err['msg']}") from None


class GatewayRunner:
    def __init__(self, cfg: GatewayConfig, *, clock: Clock = utc_now,
                 scheduler: bool = True, status_interval_s: float = 30.0) -> None:
        self.cfg = cfg
        self.clock = clock
        self.broker: ManagedBroker | None = None
        self.use_scheduler = scheduler
        self.scheduler: GatewayScheduler | None = None
        self.status_interval_s = status_interval_s
        self._stop = threading.Event()
        self._registry: tuple[str, ...] = ()
        self._check_error: str | None = None  # the last one logged, not logged again
        self.host, self.port = cfg.broker.address
        self.service: GatewayService | None = None

    def start(self) -> None:
        if not self.cfg.broker.url:
            with Store(self.cfg.db_path) as store:
                users = broker_users(self.cfg, store)
            self._registry = tuple(u.username for u in users)
            self.broker = ManagedBroker(broker_settings(self.cfg), users, self.cfg.depot)
            self.broker.start()
        self.service = GatewayService(
            self.cfg, host=self.host, port=self.port, username=self.cfg.broker.username,
            password=self.cfg.broker.password or None, clock=self.clock,
            status_interval_s=self.status_interval_s,
        )
        self.service.start()
        if self.use_scheduler:
            from gateway.scheduler import GatewayScheduler  # apscheduler: +99 ms to start-up

            service = self.service
            # the jobs write claims (and mark escalations due) and hand the merge to the
            # service's worker, which publishes its entries: a merge in the job's own thread
            # wrote entries the tablets saw only at their next quiet resync
            sched = GatewayScheduler(self.cfg, clock=self.clock,
                                     hand_refresh=service.request_refresh)
            sched.start()
            self.scheduler = sched
            # a source is read once at start, not first at its next cron time (a nightly export
            # would otherwise wait a day); an unchanged file is skipped without parsing
            for src in self.cfg.sources:
                sched.run_now(src.name)

    def check(self) -> None:
        """Supervise the broker and pick up devices added since the last check."""
        if self.broker is None:
            return
        if self.broker.supervise():
            log.warning("mosquitto died and was restarted (%d restarts)", self.broker.restarts)
        try:
            with Store(self.cfg.db_path) as store:
                users = broker_users(self.cfg, store)
        except (ConfigError, StoreError) as exc:  # e.g. dispatch.toml saved half-edited
            if str(exc) != self._check_error:
                log.error("broker users not updated, the current %d kept: %s",
                          len(self._registry), exc)
                self._check_error = str(exc)
            return
        self._check_error = None
        names = tuple(u.username for u in users)
        if names != self._registry:
            self._registry = names
            self.broker.users = tuple(users)
            write_config(self.broker.settings, users, self.cfg.depot)
            pid = self.broker.pid
            if pid is not None:
                os.kill(pid, signal.SIGHUP)  # mosquitto re-reads passwords and ACL
            log.info("broker users updated: %d identities", len(users))

    def run_forever(self, check_every_s: float = 5.0) -> None:
        while not self._stop.wait(check_every_s):
            self.check()

    def stop(self) -> None:
        self._stop.set()
        if self.scheduler is not None:
            self.scheduler.shutdown()
        if self.service is not None:
            self.service.stop()
        if self.broker is not None:
            self.broker.stop()
