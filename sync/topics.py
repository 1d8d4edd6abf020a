"""MQTT topic names (DESIGN §4). Root: ``crossdock/v1/{depot}/``; see docs/PROTOCOL.md.

Pure string functions: building a topic, and reading one back into its parts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sync.errors import SyncError

_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def check_segment(value: str, what: str) -> str:
    """A depot, device or client id must be one safe topic segment (no ``/``, ``+``, ``#``)."""
    if not _SEGMENT.match(value):
        raise SyncError(f"{what} {value!r} is not a valid id (letters, digits, _ . - only)")
    return value


@dataclass(frozen=True)
class Topics:
    """The topics of one depot."""

    depot: str

    def __post_init__(self) -> None:
        check_segment(self.depot, "depot")

    @property
    def root(self) -> str:
        return f"crossdock/v1/{self.depot}"

    def inbox(self, device: str) -> str:
        return f"{self.root}/devices/{check_segment(device, 'device')}/inbox"

    def outbox(self, device: str) -> str:
        return f"{self.root}/devices/{check_segment(device, 'device')}/outbox"

    def acks(self, device: str) -> str:
        return f"{self.root}/devices/{check_segment(device, 'device')}/acks"

    def device_status(self, device: str) -> str:
        return f"{self.root}/devices/{check_segment(device, 'device')}/status"

    @property
    def commands(self) -> str:
        return f"{self.root}/dispatch/commands"

    def replies(self, client: str) -> str:
        return f"{self.root}/dispatch/replies/{check_segment(client, 'client')}"

    @property
    def gateway_status(self) -> str:
        return f"{self.root}/gateway/status"

    @property
    def all_outboxes(self) -> str:
        return f"{self.root}/devices/+/outbox"

    @property
    def all_device_status(self) -> str:
        return f"{self.root}/devices/+/status"

    def device_of(self, topic: str) -> str | None:
        """The device id in a ``devices/{device}/...`` topic of this depot, else None."""
        prefix = f"{self.root}/devices/"
        if not topic.startswith(prefix):
            return None
        rest = topic[len(prefix) :].split("/")
        if len(rest) != 2 or not _SEGMENT.match(rest[0]):
            return None
        return rest[0]
