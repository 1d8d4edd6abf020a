"""The gateway's seam to the broker: what ``GatewayService`` and ``send_command`` need of a link.

``MqttLink`` (``gateway.streams.mqtt``, over paho) is the real one and the default; a test
passes another ``LinkMaker`` (the in-memory broker of ``tests/memnet.py``) to run the same
gateway without a Mosquitto. A maker is called like ``MqttLink``'s constructor; the link it
returns calls ``on_message(topic, payload)`` and ``on_connect()`` from its own thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from gateway.streams.mqtt import LinkSettings


class Link(Protocol):
    """One broker connection: ``start`` (connect in the background), ``publish``, ``stop``."""

    connected: threading.Event
    problem: str | None
    """Why it is not connected (``does not answer (...)``, ``not authorized (...)``), or None."""
    refused: threading.Event
    """Set when the broker refused the login."""

    @property
    def where(self) -> str:
        """The broker, for messages (``mqtt://host:port``)."""
        ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def publish(self, topic: str, payload: bytes, *, qos: int = 1,
                retain: bool = False) -> None:
        """Hand a message to the link; while offline it is kept and sent on reconnect."""
        ...

    def wait_connected(self, timeout: float) -> bool: ...


class LinkMaker(Protocol):
    def __call__(self, settings: LinkSettings, *, subscriptions: Sequence[str],
                 on_message: Callable[[str, bytes], None],
                 on_connect: Callable[[], None] = ...,
                 on_problem: Callable[[str | None], None] = ...,
                 will: tuple[str, bytes] | None = None,
                 log_problems: bool = True) -> Link: ...
