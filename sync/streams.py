"""Per-device streams: a gapless ``seq`` on the sender, gap repair on the receiver (DESIGN §4).

The sender keeps a changelog ``first..last`` (it may have compacted entries before ``first``).
The receiver applies entry ``last + 1`` only; anything older is a duplicate, anything newer
means something was lost, and the receiver asks for ``seq > last``. The sender answers a
request with a replay of its log, or with a snapshot when the log no longer reaches back.
Entries that arrived early are dropped, not buffered: the replay brings them again in order,
so correctness never depends on what the broker queued.

Both sides are plain functions over frozen state; the shells store the state and move bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from sync.errors import StreamError


@dataclass(frozen=True)
class Receiver:
    """A receiver's state: the last applied ``seq`` and the ``after`` it last asked for."""

    last: int = 0
    asked_after: int | None = None


Verdict = Literal["apply", "duplicate", "gap"]


@dataclass(frozen=True)
class Step:
    """What the shell does after an entry arrives: apply it or not, and maybe ask for more."""

    receiver: Receiver
    verdict: Verdict
    request_after: int | None = None


def receive(state: Receiver, seq: int) -> Step:
    """Judge entry ``seq``. On "apply" the shell applies it and stores the new state in the
    same transaction; on "gap" it sends a resync request for ``request_after`` if one is set."""
    if seq < 1:
        raise StreamError(f"stream seq must be 1 or more, got {seq}")
    if seq <= state.last:
        return Step(state, "duplicate")
    if seq == state.last + 1:
        return Step(Receiver(last=seq, asked_after=None), "apply")
    if state.asked_after == state.last:
        return Step(state, "gap")  # already asked; the replay is on its way
    return Step(replace(state, asked_after=state.last), "gap", request_after=state.last)


@dataclass(frozen=True)
class BatchStep:
    """What the shell does with consecutive entries ``first..last``: apply those from
    ``first + skip`` on (``verdict == "apply"``), in one transaction with the new state."""

    receiver: Receiver
    verdict: Verdict
    skip: int = 0
    request_after: int | None = None


def receive_batch(state: Receiver, first: int, last: int) -> BatchStep:
    """Judge consecutive entries ``first..last`` at once: the same outcome as ``receive`` on
    each of them in order (leading duplicates skipped, the rest applied; or a gap)."""
    if first < 1 or last < first:
        raise StreamError(f"stream batch must be 1 <= first <= last, got {first}..{last}")
    if last <= state.last:
        return BatchStep(state, "duplicate")
    if first <= state.last + 1:
        return BatchStep(Receiver(last=last, asked_after=None), "apply",
                         skip=state.last + 1 - first)
    step = receive(state, first)
    return BatchStep(step.receiver, step.verdict, request_after=step.request_after)


def restart(state: Receiver) -> Step:
    """After a restart, reconnect or a quiet timeout: always ask for everything after ``last``."""
    return Step(replace(state, asked_after=state.last), "gap", request_after=state.last)


def snapshot(state: Receiver, seq: int) -> Receiver:
    """A snapshot at ``seq`` replaces the receiver's data; later entries apply from ``seq + 1``.

    A snapshot older than what the receiver holds is still taken: the sender only sends one when
    it cannot replay (its log was compacted, or its store was reset), so it is the truth.
    """
    if seq < 0:
        raise StreamError(f"snapshot seq must be 0 or more, got {seq}")
    del state  # a snapshot is the whole state
    return Receiver(last=seq, asked_after=None)


@dataclass(frozen=True)
class Replay:
    """Send log entries ``first..last`` in order."""

    first: int
    last: int


@dataclass(frozen=True)
class SendSnapshot:
    """Send the current state as a snapshot at ``seq`` (then nothing: it is the latest)."""

    seq: int


@dataclass(frozen=True)
class UpToDate:
    seq: int


Repair = Replay | SendSnapshot | UpToDate


def plan_repair(after: int, *, first: int, last: int) -> Repair:
    """The sender's answer to "send me ``seq > after``" with its log holding ``first..last``.

    ``first > last`` means an empty log (everything compacted, or nothing written yet).
    """
    if after < 0:
        raise StreamError(f"resync after must be 0 or more, got {after}")
    if after == last:
        return UpToDate(last)
    if after > last or after + 1 < first:
        return SendSnapshot(last)  # the receiver is ahead of a reset log, or behind compaction
    return Replay(after + 1, last)
