"""A snapshot sent in parts, put back together before it replaces the tablet's views."""

from __future__ import annotations

from sync.envelope import Snapshot
from sync.model import OrderView


class SnapshotParts:
    """The parts of one snapshot received so far (part -> its views)."""

    def __init__(self) -> None:
        self._parts: dict[int, tuple[OrderView, ...]] = {}
        self._seq: tuple[int, int] = (-1, 0)  # (seq, parts) of the parts held

    def add(self, body: Snapshot) -> tuple[OrderView, ...] | None:
        """The whole route of a snapshot, once every part of it is here (None until then).
        Parts of an older snapshot are dropped when one with another ``seq`` begins."""
        if body.parts == 1:
            self._parts.clear()
            return body.views
        if self._parts and self._seq != (body.seq, body.parts):
            self._parts.clear()
        self._seq = (body.seq, body.parts)
        self._parts[body.part] = body.views
        if len(self._parts) < body.parts:
            return None
        views = tuple(v for part in sorted(self._parts) for v in self._parts[part])
        self._parts.clear()
        return views
