"""The gateway's MQTT link: the only gateway module that imports paho.

It turns paho's callbacks into plain calls — ``on_message(topic, payload)``, ``on_connect()``
and ``on_problem(problem)`` (a broker that does not answer, a login it refuses; None once
connected again) — and offers ``publish``. A problem is logged once when it begins or changes,
not at every retry; ``problem`` holds the current one. MQTT 5, a fixed client id, a
persistent session (``clean_start=False`` with an explicit session expiry: paho's default
would start clean on every process start), reconnect with capped backoff, and a retained
will on ``gateway/status``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.errors import GatewayError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LinkSettings:
    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = None
    session_expiry_s: int = 7 * 24 * 3600
    keepalive_s: int = 30
    backoff_min_s: float = 0.2
    backoff_max_s: float = 10.0


class MqttLink:
    """One paho client for the gateway (or a dispatch console)."""

    def __init__(
        self,
        settings: LinkSettings,
        *,
        subscriptions: Sequence[str],
        on_message: Callable[[str, bytes], None],
        on_connect: Callable[[], None] = lambda: None,
        on_problem: Callable[[str | None], None] = lambda _problem: None,
        will: tuple[str, bytes] | None = None,
        log_problems: bool = True,
    ) -> None:
        self.log_problems = log_problems  # False: the caller says it (a one-shot command)
        self.settings = settings
        self.subscriptions = list(subscriptions)
        self._on_message = on_message
        self._on_connect = on_connect
        self._on_problem = on_problem
        self.connected = threading.Event()
        self.disconnects = 0
        """How many times the connection was lost (or closed) since ``start``."""
        self.problem: str | None = None
        """Why the link is not connected: ``does not answer (...)``, ``not authorized (...)``;
        None while connected or before the first attempt."""
        self.refused = threading.Event()
        """Set when the broker refused the login (wrong username or password, not allowed)."""
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=settings.client_id,
                             protocol=mqtt.MQTTv5)
        client.max_queued_messages_set(0)  # paho keeps every unsent message: never drop
        client.max_inflight_messages_set(100)
        client.reconnect_delay_set(min_delay=max(1, int(settings.backoff_min_s)),
                                   max_delay=max(1, int(settings.backoff_max_s)))
        if settings.username:
            client.username_pw_set(settings.username, settings.password)
        if will is not None:
            client.will_set(will[0], will[1], qos=1, retain=True)
        client.on_connect = self._connected
        client.on_connect_fail = self._connect_failed
        client.on_disconnect = self._disconnected
        client.on_message = self._message
        self._client = client

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if self.settings.session_expiry_s:
            props.SessionExpiryInterval = self.settings.session_expiry_s
        try:
            self._client.connect_async(self.settings.host, self.settings.port,
                                       keepalive=self.settings.keepalive_s,
                                       clean_start=self.settings.session_expiry_s == 0,
                                       properties=props)
        except (OSError, ValueError) as exc:
            raise GatewayError(f"mqtt {self.settings.host}:{self.settings.port}: {exc}") from None
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.warning("publish to %s failed: %s", topic, mqtt.error_string(info.rc))

    def wait_connected(self, timeout: float) -> bool:
        """True once connected; False after ``timeout`` or as soon as the login is refused
        (``refused``): retrying a wrong password does not make it right."""
        deadline = time.monotonic() + timeout
        while not self.connected.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
            if self.refused.is_set() or time.monotonic() >= deadline:
                return False
        return True

    def _connected(self, client: mqtt.Client, _userdata: object, _flags: object,
                   reason: ReasonCode, _props: object) -> None:
        if reason.is_failure:
            if str(reason).lower() in ("not authorized", "bad user name or password",
                                       "banned", "client identifier not valid"):
                self.refused.set()
                self._problem(f"not authorized ({reason}): check the username and password")
            else:
                self._problem(f"refused the connection ({reason})")
            return
        for topic in self.subscriptions:
            client.subscribe(topic, qos=1)
        self.refused.clear()
        self.connected.set()
        if self.problem is not None:
            if self.log_problems:
                log.warning("broker %s: connected again", self.where)
            self.problem = None
            self._on_problem(None)
        self._on_connect()

    @property
    def where(self) -> str:
        return f"mqtt://{self.settings.host}:{self.settings.port}"

    def _problem(self, problem: str) -> None:
        if problem == self.problem:  # said once when it began, not at every retry
            return
        if self.log_problems:
            log.warning("broker %s: %s; retrying every %g-%g s", self.where, problem,
                        max(1, int(self.settings.backoff_min_s)),
                        max(1, int(self.settings.backoff_max_s)))
        self.problem = problem
        self._on_problem(problem)

    def _connect_failed(self, _client: mqtt.Client, _userdata: object) -> None:
        self._problem("does not answer (no connection)")

    def _disconnected(self, _client: mqtt.Client, _userdata: object, _flags: object,
                      reason: ReasonCode, _props: object) -> None:
        self.connected.clear()
        self.disconnects += 1
        log.info("mqtt disconnected: %s", reason)

    def _message(self, _client: mqtt.Client, _userdata: object,
                 message: mqtt.MQTTMessage) -> None:
        self._on_message(message.topic, bytes(message.payload))


def take_over_session(host: str, port: int, username: str, password: str, *,
                      timeout: float = 5.0) -> bool:
    """Log in as ``username`` on a clean start and leave at once: the broker (client id =
    username) closes that identity's other connection and, with no session expiry, discards
    its persistent session. Retried until ``timeout`` (the broker may still be re-reading its
    password file); True once it worked."""
    done = threading.Event()
    ok: list[bool] = []

    def connected(_c: mqtt.Client, _u: object, _f: object, reason: ReasonCode,
                  _p: object) -> None:
        ok.append(not reason.is_failure)
        done.set()

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username,
                             protocol=mqtt.MQTTv5)
        client.username_pw_set(username, password)
        client.on_connect = connected
        done.clear()
        ok.clear()
        try:
            client.connect(host, port, keepalive=10, clean_start=True)
        except OSError:
            time.sleep(0.1)
            continue
        client.loop_start()
        done.wait(max(0.1, deadline - time.monotonic()))
        client.disconnect()
        client.loop_stop()
        if ok and ok[0]:
            return True
        time.sleep(0.1)
    return False
