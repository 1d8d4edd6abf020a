"""The sync bar as data: offline since / syncing / up to date, last sync, waiting actions,
each source's cadence and age, and the depot's zone, named once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Literal

from agent.model import OutboxItem, SyncStatus
from ui.viewmodels.words import Meaning, ago, cadence_words, clock_on


@dataclass(frozen=True)
class SyncBar:
    state: Literal["offline", "syncing", "up to date"]
    headline: str  # "Working offline since 07:45" / "Syncing" / "Up to date"
    meaning: Meaning
    last_sync: str  # "last sync 2 min ago"
    waiting: str  # "3 actions waiting" / "nothing waiting"
    sources: tuple[str, ...]  # "legacy: nightly, as of 00:00 (10 h 41 min ago)"
    zone: str  # "times in Europe/Berlin"


def sync_bar(status: SyncStatus, pending: Sequence[OutboxItem], *, now: datetime,
             zone: tzinfo) -> SyncBar:
    n = len(pending)
    waiting = "nothing waiting" if n == 0 else f"{n} action{'s' if n > 1 else ''} waiting"
    if not status.online:
        since = status.offline_since
        headline = ("Working offline" if since is None
                    else f"Working offline since {clock_on(since, zone, now)}")
        state: Literal["offline", "syncing", "up to date"] = "offline"
        meaning: Meaning = "warn"
    elif n or status.gateway_online is False:
        state, meaning = "syncing", "pending"
        headline = "Syncing" if status.gateway_online is not False else "Syncing (depot offline)"
    else:
        state, meaning, headline = "up to date", "ok", "Up to date"
    last = ("never synced" if status.last_sync_at is None
            else f"last sync {ago((now - status.last_sync_at).total_seconds())}")
    sources = tuple(
        f"{s.source}: {cadence_words(s.cadence_s)}, "
        + ("as of unknown" if s.as_of is None
           else f"as of {clock_on(s.as_of, zone, now)} ({ago((now - s.as_of).total_seconds())})")
        for s in status.sources
    )
    return SyncBar(state=state, headline=headline, meaning=meaning, last_sync=last,
                   waiting=waiting, sources=sources, zone=f"times in {zone}")
