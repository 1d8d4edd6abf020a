"""What a watcher of ``GatewayService`` is told (``GatewayService.watch``), on the worker thread.

A public hook for benchmarks and tools: what the gateway handed to its link, and the resyncs
it served, without reaching into the service.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Handed:
    """A stream message (``view_change(s)`` or a ``snapshot`` part) handed to the link."""

    device: str
    topic: str
    size: int
    """Payload bytes."""
    entries: int
    """Stream entries it carries (0 for a snapshot part)."""
    repair: bool
    """Sent answering a resync (a replay or a snapshot)."""


@dataclass(frozen=True)
class Repaired:
    """A resync served: ``plan`` is "replay", "snapshot" or "up to date"."""

    device: str
    after: int
    plan: str
    seconds: float
    """Worker time to plan, read the changelog and hand every message to the link."""


Watcher = Callable[[Handed | Repaired], None]
