"""Real Mosquitto brokers and real paho clients for tests (the fixtures live in conftest.py).

* ``free_port()`` -- a TCP port that was free a moment ago.
* ``start_broker(data_dir, **overrides)`` -- a started ``ManagedBroker`` on a free loopback
  port. Without ``users`` it allows anonymous clients and has no ACL; with ``users`` it
  requires passwords and applies the generated ACL (both can be overridden).
* ``BrokerFactory`` -- what the ``make_broker`` fixture yields; stops every broker it started.
* ``MqttProbe.connect(broker, client_id, ...)`` -- a connected MQTT v5 paho client that
  records what it receives, with waits on events instead of sleeps.
* ``connect_reason(broker, client_id, ...)`` -- the CONNACK reason of one connection attempt.

``MqttProbe`` connects to the plain listener unless given ``port=``; with ``ca_file=`` it speaks
TLS and verifies the broker against that file (``broker.settings.tls_port`` for the TLS one).
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.broker.conf import BrokerSettings, BrokerUser
from gateway.broker.process import ManagedBroker
from gateway.errors import GatewayError

DEPOT = "test-depot"
"""The depot id of test brokers unless a test passes its own."""

WAIT = 3.0
"""Seconds a test waits for something the broker should do at once."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def start_broker(
    data_dir: Path,
    *,
    users: Sequence[BrokerUser] = (),
    depot: str = DEPOT,
    timeout: float = 10.0,
    **overrides: Any,
) -> ManagedBroker:
    """Start Mosquitto on a free loopback port with its files in ``data_dir``.

    ``overrides`` are ``BrokerSettings`` fields (``max_queued_messages=5``, ...). A port that
    another process took between choosing and binding it is retried with a new port.
    """
    fields: dict[str, Any] = {
        "data_dir": data_dir,
        "host": "127.0.0.1",
        "allow_anonymous": not users,
        "acl": bool(users),
    }
    fields.update(overrides)
    for attempt in range(3):
        settings = BrokerSettings(**{"port": free_port(), **fields})
        broker = ManagedBroker(settings, users, depot)
        try:
            broker.start(timeout)
        except GatewayError as exc:
            broker.stop()
            if "in use" in str(exc) and "port" not in overrides and attempt < 2:
                continue
            raise
        return broker
    raise AssertionError("unreachable")


class BrokerFactory:
    """Start brokers on demand (``factory(**overrides)``); ``close()`` stops them all."""

    def __init__(self, base_dir: Path) -> None:
        self._base_dir = base_dir
        self._brokers: list[ManagedBroker] = []

    def __call__(
        self, *, users: Sequence[BrokerUser] = (), depot: str = DEPOT, **overrides: Any
    ) -> ManagedBroker:
        data_dir = overrides.pop("data_dir", self._base_dir / f"broker{len(self._brokers)}")
        broker = start_broker(data_dir, users=users, depot=depot, **overrides)
        self._brokers.append(broker)
        return broker

    def close(self) -> None:
        for broker in self._brokers:
            broker.stop()


class MqttProbe:
    """A paho MQTT v5 client running its network loop in a thread; received messages queue up."""

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.reason: ReasonCode | None = None
        self.session_present = False
        self._subacks: dict[int, list[ReasonCode]] = {}
        self._subacked = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect

    @classmethod
    def connect(
        cls,
        broker: ManagedBroker,
        client_id: str,
        *,
        username: str | None = None,
        password: str | None = None,
        clean_start: bool = True,
        session_expiry: int | None = None,
        timeout: float = WAIT,
        host: str | None = None,
        port: int | None = None,
        ca_file: Path | None = None,
    ) -> MqttProbe:
        """Connect and wait for a successful CONNACK (AssertionError otherwise)."""
        probe = cls(client_id)
        reason = probe.start(
            broker,
            username=username,
            password=password,
            clean_start=clean_start,
            session_expiry=session_expiry,
            timeout=timeout,
            host=host,
            port=port,
            ca_file=ca_file,
        )
        if reason.is_failure:
            probe.close()
            raise AssertionError(f"{client_id} could not connect to {broker.url}: {reason}")
        return probe

    def start(
        self,
        broker: ManagedBroker,
        *,
        username: str | None = None,
        password: str | None = None,
        clean_start: bool = True,
        session_expiry: int | None = None,
        timeout: float = WAIT,
        host: str | None = None,
        port: int | None = None,
        ca_file: Path | None = None,
    ) -> ReasonCode:
        """Connect; return the CONNACK reason (AssertionError if none arrives in time, or the
        broker closes the connection first). ``ca_file``: connect with TLS, trusting it.
        A failed TLS handshake raises ``ssl.SSLError`` from here."""
        if username is not None:
            self.client.username_pw_set(username, password)
        if ca_file is not None:
            self.client.tls_set(ca_certs=str(ca_file))
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho
        if session_expiry is not None:
            properties.SessionExpiryInterval = session_expiry
        where = f"{host or broker.host}:{port or broker.port}"
        self.client.connect(
            host or broker.host,
            port or broker.port,
            keepalive=10,
            clean_start=clean_start,
            properties=properties,
        )
        self.client.loop_start()
        deadline = time.monotonic() + timeout
        while not self.connected.is_set() and not self.disconnected.is_set():
            if time.monotonic() >= deadline:
                break
            self.connected.wait(0.02)
        if not self.connected.is_set() or self.reason is None:
            self.close()
            raise AssertionError(f"{self.client_id}: no CONNACK from {where}")
        return self.reason

    def subscribe(self, topic: str, qos: int = 1, timeout: float = WAIT) -> ReasonCode:
        """Subscribe and wait for the SUBACK; return its reason (a failure when refused)."""
        result, mid = self.client.subscribe(topic, qos)
        if result != mqtt.MQTT_ERR_SUCCESS or mid is None:
            raise AssertionError(f"{self.client_id}: subscribe {topic} failed: {result}")
        with self._subacked:
            if not self._subacked.wait_for(lambda: mid in self._subacks, timeout):
                raise AssertionError(f"{self.client_id}: no SUBACK for {topic}")
            return self._subacks.pop(mid)[0]

    def publish(self, topic: str, payload: bytes, qos: int = 1, timeout: float = WAIT) -> None:
        """Publish and wait until the broker acknowledged it (PUBACK for QoS 1)."""
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise AssertionError(f"{self.client_id}: publish to {topic} not acknowledged")

    def publish_all(self, topic: str, payloads: Sequence[bytes], qos: int = 1,
                    timeout: float = WAIT) -> None:
        """Publish every payload back to back (a burst: no wait between them), then wait until
        the broker acknowledged each."""
        infos = [self.client.publish(topic, payload, qos=qos) for payload in payloads]
        for info in infos:
            info.wait_for_publish(timeout)
            if not info.is_published():
                raise AssertionError(f"{self.client_id}: publish to {topic} not acknowledged")

    def get(self, timeout: float = WAIT) -> mqtt.MQTTMessage | None:
        """The next received message, or None if none arrives within ``timeout``."""
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain(self, quiet: float = 0.3, first: float = WAIT) -> list[mqtt.MQTTMessage]:
        """Every message until none arrives for ``quiet`` seconds (``first`` for the first)."""
        received: list[mqtt.MQTTMessage] = []
        message = self.get(first)
        while message is not None:
            received.append(message)
            message = self.get(quiet)
        return received

    def close(self) -> None:
        """Disconnect (a persistent session stays on the broker) and stop the loop thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> MqttProbe:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- paho callbacks (network thread) --

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.reason = reason
        self.session_present = flags.session_present
        self.connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.disconnected.set()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        self.messages.put(message)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        with self._subacked:
            self._subacks[mid] = reasons
            self._subacked.notify_all()


def connect_reason(
    broker: ManagedBroker,
    client_id: str,
    *,
    username: str | None = None,
    password: str | None = None,
) -> ReasonCode:
    """The CONNACK reason the broker gives this client (the connection is then closed)."""
    probe = MqttProbe(client_id)
    try:
        return probe.start(broker, username=username, password=password)
    finally:
        probe.close()
