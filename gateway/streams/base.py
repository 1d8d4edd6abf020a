"""What the gateway service's parts share: its state, counting, publishing, stamps.

``GatewayService`` (``service``: the worker loop, status, housekeeping) derives from
``Inbound`` (``inbound``: messages from tablets and dispatch), which derives from ``Outflow``
(``outflow``: stream entries out: coalescing, catch-up, gap repair), which derives from
``ServiceBase``. One object, one worker thread: the parts split the code, not the state.
"""

from __future__ import annotations

import collections
import datetime as _dt
from collections.abc import Callable
from typing import Any

from gateway.config import GatewayConfig
from gateway.store.core import Store
from gateway.store.devices import DeviceStore, Entry
from gateway.streams.limits import TokenBucket
from gateway.streams.link import Link
from gateway.streams.watch import Handed, Repaired, Watcher
from sync.codec import encode
from sync.envelope import DriverEventMsg
from sync.model import Policy
from sync.topics import Topics


class ServiceBase:
    """The service's state (set in ``GatewayService.__init__``) and the helpers every part
    uses."""

    cfg: GatewayConfig
    topics: Topics
    clock: Callable[[], _dt.datetime]
    policy: Policy
    link: Link
    tick_s: float
    coalesce_s: float
    ingest_settle_s: float
    watch_s: float
    snapshot_part_chars: int
    event_rate: float
    event_burst: int
    published: int
    stream_messages: int
    published_entries: int
    _refresh_at: float | None
    _next_tick: float
    _next_watch: float
    _data_version: int | None
    _published: dict[str, int]
    _buckets: dict[str, TokenBucket]
    _deferred: dict[str, collections.deque[tuple[str, DriverEventMsg]]]
    _deferred_ids: dict[str, set[str]]
    _held: dict[str, list[Entry]]
    _sent_at: dict[str, float]
    _watchers: list[Watcher]
    _repairing: bool

    def _tell(self, event: Handed | Repaired) -> None:
        for watcher in self._watchers:
            watcher(event)


    def _count(self, store: Store, *names: str) -> None:
        with store.transaction():
            for name in names:
                DeviceStore(store).bump(name)

    def _publish(self, topic: str, msg: Any) -> None:
        self.link.publish(topic, encode(msg))
        self.published += 1

    def _hlc(self, store: Store) -> str:
        with store.transaction():
            return store.next_hlc(self.clock())
