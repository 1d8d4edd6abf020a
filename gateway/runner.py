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
import secrets
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr, ValidationError

from gateway.broker.conf import BrokerSettings, BrokerUser, write_config
from gateway.broker.process import ManagedBroker
from gateway.config import GatewayConfig
from gateway.errors import ConfigError, StoreError
from gateway.private import exposed
from gateway.setup import dispatch_password
from gateway.store.core import Store
from gateway.store.devices import DeviceStore
from gateway.streams.limits import EVENT_BURST, EVENT_RATE_PER_S
from gateway.streams.mqtt import take_over_session
from gateway.streams.service import Clock, GatewayService, utc_now

if TYPE_CHECKING:
    from gateway.scheduler import GatewayScheduler

log = logging.getLogger(__name__)


def broker_users(cfg: GatewayConfig, store: Store) -> list[BrokerUser]:
    """The gateway, the dispatch console (dispatch.toml) and every registered device that is
    not revoked."""
    users = [BrokerUser.model_validate({"username": cfg.broker.username,
                                        "password": cfg.broker.password or "-",
                                        "role": "gateway"})]
    password = dispatch_password(cfg)
    if password:
        users.append(BrokerUser.model_validate({"username": "dispatch", "password": password,
                                                "role": "dispatch"}))
    for device in DeviceStore(store).all():
        if device.revoked:
            continue
        users.append(BrokerUser.model_validate({"username": device.device,
                                                "password_hash": device.password_hash,
                                                "role": "device", "device": device.device}))
    return users


def secret_files(cfg: GatewayConfig, config_file: Path) -> list[Path]:
    """The files that hold a secret or the store (``config_file``: gateway.toml), and the
    folders holding them."""
    db = cfg.db_path
    files = [config_file, cfg.path("dispatch.toml"), db,
             db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
    b = cfg.broker
    if b.keyfile is not None:
        files.append(cfg.path(b.keyfile))
    if not b.url:
        data_dir = cfg.path(b.data_dir)
        files += [data_dir, data_dir / "passwd", data_dir / "acl", data_dir / "mosquitto.conf"]
    folders = sorted({f.parent for f in files if f.parent != cfg.path(b.data_dir)})
    return [*folders, *files]


def exposed_secrets(cfg: GatewayConfig, config_file: Path) -> str | None:
    """One line naming every secret file (or its folder) others may read, or None."""
    found = exposed(secret_files(cfg, config_file))
    if not found:
        return None
    names = ", ".join(f"{path} ({mode:04o})" for path, mode in found)
    return (f"readable by others, but holding a secret or the store: {names}; "
            "chmod 600 the files and 700 the folders")


def pid_file(cfg: GatewayConfig) -> Path:
    """Where ``gateway run`` writes its pid: ``gateway devices`` commands wake it with SIGUSR1."""
    return cfg.path("gateway.pid")


def tell_running_gateway(cfg: GatewayConfig) -> int | None:
    """SIGUSR1 to the running ``gateway run`` of ``cfg`` (it checks the device registry at
    once); its pid, or None when none runs (or the pid file names another program)."""
    try:
        pid = int(pid_file(cfg).read_text(encoding="ascii").strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    if b"crossdock" not in cmdline:  # a stale file: that pid is some other program now
        return None
    try:
        os.kill(pid, signal.SIGUSR1)
    except OSError:
        return None
    return pid


def write_broker_files(cfg: GatewayConfig, store: Store) -> None:
    """The managed broker's passwd and ACL from the registry now (what ``gateway run`` writes
    at start), so they never name a revoked device or an old credential."""
    if cfg.broker.url:
        return
    settings = broker_settings(cfg)
    if settings.data_dir.exists():
        write_config(settings, broker_users(cfg, store), cfg.depot)


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
            allow_plain_beyond_loopback=b.allow_plain_beyond_loopback,
            certfile=None if b.certfile is None else cfg.path(b.certfile),
            keyfile=None if b.keyfile is None else cfg.path(b.keyfile),
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"broker{'.' + where if where else ''}: {err['msg']}") from None


def _identity(user: BrokerUser) -> tuple[str, ...]:
    """What makes two users the same broker identity (a plain password's hash is salted anew
    on every write, so the password itself is compared)."""
    secret = (user.password.get_secret_value() if user.password is not None
              else user.password_hash or "")
    return (user.username, user.role, user.device or "", secret)


class GatewayRunner:
    def __init__(self, cfg: GatewayConfig, *, clock: Clock = utc_now,
                 scheduler: bool = True, status_interval_s: float = 30.0,
                 event_rate: float = EVENT_RATE_PER_S, event_burst: int = EVENT_BURST) -> None:
        self.event_rate, self.event_burst = event_rate, event_burst
        self.cfg = cfg
        self.clock = clock
        self.broker: ManagedBroker | None = None
        self.use_scheduler = scheduler
        self.scheduler: GatewayScheduler | None = None
        self.status_interval_s = status_interval_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._registry: tuple[tuple[str, ...], ...] = ()
        self._check_error: str | None = None  # the last one logged, not logged again
        self.host, self.port = cfg.broker.address
        self.service: GatewayService | None = None

    def start(self) -> None:
        with Store(self.cfg.db_path) as store, store.transaction():
            # a store that cannot be written stops the gateway here, in one line, rather than
            # every message and job after "running"
            store.set_meta("gateway_started_at", self.clock().isoformat())
        if not self.cfg.broker.url:
            with Store(self.cfg.db_path) as store:
                users = broker_users(self.cfg, store)
            self._registry = tuple(_identity(u) for u in users)
            self.broker = ManagedBroker(broker_settings(self.cfg), users, self.cfg.depot)
            self.broker.start()
        self.service = GatewayService(
            self.cfg, host=self.host, port=self.port, username=self.cfg.broker.username,
            password=self.cfg.broker.password or None, clock=self.clock,
            status_interval_s=self.status_interval_s,
            event_rate=self.event_rate, event_burst=self.event_burst,
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
        """Supervise the broker and pick up what ``gateway devices`` changed since the last
        check: a device added gets its identity; a revoked one loses it, and a rotated one its
        old credential, and both lose their live connection and persistent session
        (``_drop_sessions``)."""
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
        names = tuple(_identity(u) for u in users)
        if names != self._registry:
            new = {u.username: _identity(u) for u in users}
            dropped = [u for u in self.broker.users if new.get(u.username, ()) != _identity(u)]
            self._registry = names
            if dropped:
                self._drop_sessions(dropped, users)
            self._reload(users)
            log.info("broker users updated: %d identities", len(users))

    def _reload(self, users: list[BrokerUser]) -> None:
        assert self.broker is not None
        self.broker.users = tuple(users)
        write_config(self.broker.settings, users, self.cfg.depot)
        pid = self.broker.pid
        if pid is not None:
            os.kill(pid, signal.SIGHUP)  # mosquitto re-reads passwords and ACL

    def _drop_sessions(self, dropped: list[BrokerUser], users: list[BrokerUser]) -> None:
        """Drop the live connection and the persistent session of each identity in
        ``dropped`` (revoked, or its credential rotated), before ``users`` take effect.

        Mosquitto keeps a connection that logged in with a password it no longer has, and
        keeps its session for ``persistent_client_expiration``. So the identity is given a
        one-time password for a moment, and the gateway logs in with it on a clean start:
        the broker hands it the identity's one session (client id = username), closing the
        tablet's connection, and discards the session when it disconnects. The tablet cannot
        log back in meanwhile: its password is no longer in the file."""
        assert self.broker is not None
        others = [u for u in users if u.username not in {d.username for d in dropped}]
        once = {d.username: secrets.token_urlsafe(18) for d in dropped}
        self._reload([*others, *(d.model_copy(update={"password": SecretStr(once[d.username]),
                                                       "password_hash": None})
                                 for d in dropped)])
        for user in dropped:
            if not take_over_session(self.host, self.port, user.username, once[user.username]):
                log.error("could not drop the session of %s: its connection may stay open "
                          "until it reconnects (it cannot log in again)", user.username)
            else:
                log.warning("dropped the connection and session of %s", user.username)

    def run_forever(self, check_every_s: float = 5.0) -> None:
        """Supervise until ``stop``: ``check`` every ``check_every_s``, and at once when
        ``wake`` is called (SIGUSR1 from ``gateway devices revoke|rotate|bind``); raises the
        StoreError that ended the service's worker or a scheduled job when the store cannot be
        written at all (read-only, disk full)."""
        next_check = time.monotonic() + check_every_s
        while True:
            woken = self._wake.wait(min(0.5, check_every_s))
            self._wake.clear()
            if self._stop.is_set():
                return
            self.raise_fatal()
            if woken or time.monotonic() >= next_check:
                next_check = time.monotonic() + check_every_s
                self.check()

    def raise_fatal(self) -> None:
        for part in (self.service, self.scheduler):
            fatal = getattr(part, "fatal", None)
            if fatal is not None:
                raise fatal

    def wake(self) -> None:
        """Check now (safe from a signal handler)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self.scheduler is not None:
            self.scheduler.shutdown()
        if self.service is not None:
            self.service.stop()
        if self.broker is not None:
            self.broker.stop()
