"""The two networks a depot scenario runs on: the in-memory broker and a real Mosquitto.

Both offer the same few things, so one scenario runs on either (the ``network`` fixture):
``kind``; ``host``/``port`` (what configs name; ignored in memory); ``link`` (a gateway
``LinkMaker``) and ``transport`` (an agent ``TransportFactory``); ``probe(client_id)``, a raw
client; ``kill()`` and ``restart()`` of the broker; ``save()``, after which a kill loses only
what was queued since (Mosquitto writes its persistence file on a clean stop, so ``save`` is a
clean restart there; the in-memory broker always keeps its sessions through a crash).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from agent.session import MqttSession, SessionHandler, SessionSettings, Transport
from gateway.broker.process import ManagedBroker
from gateway.streams.link import LinkMaker
from gateway.streams.mqtt import MqttLink
from tests.broker import MqttProbe


class Received(Protocol):
    @property
    def topic(self) -> str: ...

    @property
    def payload(self) -> bytes: ...


class Probe(Protocol):
    def subscribe(self, topic: str, qos: int = 1, timeout: float = 3.0) -> object: ...

    def publish(self, topic: str, payload: bytes, qos: int = 1, timeout: float = 3.0
                ) -> None: ...

    def publish_all(self, topic: str, payloads: Sequence[bytes], qos: int = 1,
                    timeout: float = 3.0) -> None: ...

    def get(self, timeout: float = 3.0) -> Received | None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Probe: ...

    def __exit__(self, *exc_info: object) -> None: ...


class Network(Protocol):
    kind: str
    host: str
    port: int
    link: LinkMaker

    def transport(self, settings: SessionSettings, handler: SessionHandler) -> Transport: ...

    def probe(self, client_id: str) -> Probe: ...

    def kill(self) -> None: ...

    def restart(self) -> None: ...

    def save(self) -> None: ...


class MosquittoNetwork:
    """A real Mosquitto (a ``ManagedBroker`` the fixture started) and the real paho clients."""

    kind = "mosquitto"
    link: LinkMaker = MqttLink

    def __init__(self, broker: ManagedBroker) -> None:
        self.broker = broker
        self.host, self.port = broker.host, broker.port

    def transport(self, settings: SessionSettings, handler: SessionHandler) -> Transport:
        return MqttSession(settings, handler)

    def probe(self, client_id: str) -> MqttProbe:
        return MqttProbe.connect(self.broker, client_id)

    def kill(self) -> None:
        self.broker.kill()

    def restart(self) -> None:
        self.broker.restart()

    def save(self) -> None:
        self.broker.restart()

    def log(self) -> str:
        return self.broker.settings.log_file.read_text(encoding="utf-8", errors="replace")
