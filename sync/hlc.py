"""Hybrid logical clocks (Kulkarni et al., 2014): causal order that stays close to wall time.

Tablets' wall clocks drift and jump. An HLC stamp is ``(wall_ms, counter, node)``; it never goes
backwards however the wall clock moves, and a stamp observed from elsewhere pushes the local clock
past it. ``now_ms`` is always passed in: this module never reads a clock.

Stamps have a text form that sorts like the stamps: ``000001732000000000-000000-node``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sync.errors import SyncError

_WALL_DIGITS = 15
_COUNTER_DIGITS = 6


@dataclass(frozen=True, order=True)
class Hlc:
    """One stamp; also the state of a clock (the last stamp it issued or saw)."""

    wall_ms: int
    counter: int
    node: str

    def __str__(self) -> str:
        return f"{self.wall_ms:0{_WALL_DIGITS}d}-{self.counter:0{_COUNTER_DIGITS}d}-{self.node}"

    @classmethod
    def parse(cls, text: str) -> Hlc:
        """Read a stamp's text form; SyncError says what is wrong with it."""
        parts = text.split("-", 2)
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit() or not parts[2]:
            raise SyncError(f"not an HLC stamp: {text[:80]!r} (want WALLMS-COUNTER-NODE)")
        return cls(int(parts[0]), int(parts[1]), parts[2])

    @classmethod
    def zero(cls, node: str) -> Hlc:
        return cls(0, 0, node)


def tick(clock: Hlc, now_ms: int) -> Hlc:
    """A local event or send: the next stamp, later than every stamp the clock has seen."""
    if now_ms > clock.wall_ms:
        return Hlc(now_ms, 0, clock.node)
    return Hlc(clock.wall_ms, clock.counter + 1, clock.node)


def observe(clock: Hlc, remote: Hlc, now_ms: int) -> Hlc:
    """A receive: the next stamp, later than both the local clock and the remote stamp."""
    wall = max(clock.wall_ms, remote.wall_ms, now_ms)
    if wall == clock.wall_ms == remote.wall_ms:
        counter = max(clock.counter, remote.counter) + 1
    elif wall == clock.wall_ms:
        counter = clock.counter + 1
    elif wall == remote.wall_ms:
        counter = remote.counter + 1
    else:
        counter = 0
    return Hlc(wall, counter, clock.node)
