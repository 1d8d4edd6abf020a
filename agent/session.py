"""The MQTT session (the only module that imports paho).

A ``Transport`` is the seam between the agent and the network: ``start``, ``stop``,
``publish`` and a ``connected`` flag, with a ``SessionHandler`` told when the session goes
online or offline and when a message arrives. ``MqttSession`` is the real one over paho; tests
and a future in-memory pairing can pass their own factory to ``Agent``.

What ``MqttSession`` does with paho:

* MQTT 5, ``client_id`` from the settings, ``clean_start=False`` with a ``SessionExpiryInterval``
  so the broker keeps the device's subscriptions and QoS 1 messages while the tablet is away
  (paho's default would start clean);
* a retained QoS 1 will (the agent's "offline" status), set before connecting;
* paho's ``loop_start()`` thread does the network and reconnects with
  ``reconnect_delay_set(min, max)``; paho has no jitter, so after each lost or failed connection
  the loop thread (idle then) also waits a random share of the current delay, so a depot's
  tablets do not all reconnect in the same instant after a broker restart;
* subscriptions are renewed on every connect (QoS 1), before the handler hears "online";
* each paho message is decoded at once with ``sync.codec``: the handler gets an ``Incoming``
  (topic and envelope) or the ``CodecError``; it never sees a paho type. An exception from the
  handler is logged with the topic and never reaches paho's thread, so it cannot stop later
  messages.

All handler calls come from paho's network thread.
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.errors import SessionError
from sync.codec import decode
from sync.envelope import Envelope
from sync.errors import CodecError

log = logging.getLogger(__name__)

QOS = 1
_STOP_PUBLISH_WAIT_S = 2.0


@dataclass(frozen=True)
class Incoming:
    """A decoded message: the topic it came on and its envelope."""

    topic: str
    envelope: Envelope


@dataclass(frozen=True)
class Outgoing:
    """A message to publish at QoS 1."""

    topic: str
    payload: bytes
    retain: bool = False


@dataclass(frozen=True)
class SessionSettings:
    """Everything the session needs; built by the agent from its config."""

    client_id: str
    host: str
    port: int
    subscriptions: tuple[str, ...]
    session_expiry_s: int
    clean_start: bool = False
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    keepalive_s: int = 30
    backoff_min_s: float = 0.5
    backoff_max_s: float = 30.0
    will: Outgoing | None = None


class SessionHandler(Protocol):
    """What the session tells its owner; every call comes from the session's network thread."""

    def session_online(self) -> None: ...

    def session_offline(self, reason: str) -> None: ...

    def session_message(self, incoming: Incoming) -> None: ...

    def session_bad_message(self, topic: str, error: CodecError) -> None: ...


class Transport(Protocol):
    """The seam between the agent and the network."""

    @property
    def connected(self) -> bool: ...

    def start(self) -> None: ...

    def publish(self, message: Outgoing) -> bool:
        """Hand a message to the network; False when offline (the caller keeps it)."""
        ...

    def stop(self, *, final: Outgoing | None = None) -> None:
        """Publish ``final`` if online (a graceful "offline" status), then disconnect."""
        ...


TransportFactory = Callable[[SessionSettings, SessionHandler], Transport]


class MqttSession:
    """The real transport: one paho client and its ``loop_start()`` thread."""

    def __init__(
        self,
        settings: SessionSettings,
        handler: SessionHandler,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._handler = handler
        self._rng = rng if rng is not None else random.Random()
        self._online = threading.Event()
        self._stopping = threading.Event()
        self._failures = 0
        self._client = self._make_client()

    # -- Transport ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._online.is_set()

    def start(self) -> None:
        s = self._settings
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = s.session_expiry_s
        try:
            self._client.connect_async(
                s.host, s.port, keepalive=s.keepalive_s, clean_start=s.clean_start, properties=props
            )
        except (OSError, ValueError) as exc:
            raise SessionError(f"broker {s.host}:{s.port}: {exc}") from None
        self._client.loop_start()

    def publish(self, message: Outgoing) -> bool:
        if not self._online.is_set():
            return False
        info = self._client.publish(message.topic, message.payload, qos=QOS, retain=message.retain)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def stop(self, *, final: Outgoing | None = None) -> None:
        self._stopping.set()
        if final is not None and self._online.is_set():
            info = self._client.publish(final.topic, final.payload, qos=QOS, retain=final.retain)
            try:
                info.wait_for_publish(_STOP_PUBLISH_WAIT_S)
            except (RuntimeError, ValueError) as exc:
                log.info("final status not published: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()
        self._online.clear()

    # -- paho --------------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        s = self._settings
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=s.client_id, protocol=mqtt.MQTTv5
        )
        # paho annotates the delays as int, but sleeps with whatever it is given.
        client.reconnect_delay_set(s.backoff_min_s, s.backoff_max_s)  # type: ignore[arg-type]
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if s.tls:
            try:
                client.tls_set(ca_certs=None if s.ca_file is None else str(s.ca_file))
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise SessionError(f"broker TLS settings: {exc}") from None
        if s.will is not None:
            client.will_set(s.will.topic, s.will.payload, qos=QOS, retain=s.will.retain)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the connection: %s", reason_code)
            self._jitter()
            return
        self._failures = 0
        for topic in self._settings.subscriptions:
            client.subscribe(topic, qos=QOS)
        self._online.set()
        log.info("online (session present: %s)", flags.session_present)
        self._guard("online", self._handler.session_online)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._jitter()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was_online = self._online.is_set()
        self._online.clear()
        if was_online:
            self._guard("offline", partial(self._handler.session_offline, str(reason_code)))
        if not self._stopping.is_set():
            self._jitter()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        topic = message.topic
        try:
            envelope = decode(bytes(message.payload))
        except CodecError as exc:
            self._guard(topic, partial(self._handler.session_bad_message, topic, exc))
            return
        self._guard(topic, partial(self._handler.session_message, Incoming(topic, envelope)))

    def _guard(self, where: str, call: Callable[[], None]) -> None:
        """Run a handler call; an exception is logged and never reaches paho's thread."""
        try:
            call()
        except Exception:
            log.exception("agent failed handling %s", where)

    def _jitter(self) -> None:
        """Wait a random share of the current backoff (paho then waits the backoff itself)."""
        s = self._settings
        self._failures += 1
        ceiling = min(s.backoff_max_s, s.backoff_min_s * 2 ** min(self._failures, 16))
        self._stopping.wait(self._rng.uniform(0, ceiling / 2))
