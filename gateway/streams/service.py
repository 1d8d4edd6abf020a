"""The running gateway: MQTT in and out, one worker thread owning the store's stream side.

(About 410 lines, one idea: the worker's loop and life cycle around one queue; what a message
does and what goes out already live apart, in ``inbound`` and ``outflow``.)

Thread model: paho's network thread only puts ``(topic, payload)`` on a queue; the scheduler's
jobs ingest in their own threads with their own Store and then put a refresh request on the
same queue. One worker thread takes from the queue, owns a Store, applies driver events and
dispatch commands, merges, appends to device streams and publishes — so entries leave in
``seq`` order and a slow or bad message never blocks anything but itself.

Every inbound message is decoded by ``sync.codec``; a malformed, oversize, unknown-version or
unauthorized one is logged with its topic, counted (the counters are in ``gateway/status``) and
dropped; the next message is handled as usual.

This module is the worker loop, the service's life cycle, status and housekeeping; what one
message does is ``inbound``, what goes out on the streams ``outflow`` (one object: see
``gateway.streams.base``).
"""

from __future__ import annotations

import collections
import datetime as _dt
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.config import GatewayConfig
from gateway.errors import StoreError
from gateway.store.checkpointer import Checkpointer
from gateway.store.core import Store
from gateway.store.devices import DeviceStore, Entry
from gateway.streams import commands
from gateway.streams.inbound import Inbound
from gateway.streams.limits import EVENT_BURST, EVENT_RATE_PER_S, TokenBucket
from gateway.streams.link import Link, LinkMaker
from gateway.streams.mqtt import LinkSettings, MqttLink
from gateway.streams.status import record_link, source_freshness
from gateway.streams.watch import Watcher
from gateway.streams.wire import SNAPSHOT_PART_CHARS
from sync.codec import encode
from sync.envelope import (
    ENVELOPE,
    DriverEventMsg,
    SourceFreshness,
    Status,
    StatusMsg,
)
from sync.host.version import package_version
from sync.topics import Topics

log = logging.getLogger(__name__)

Clock = Callable[[], _dt.datetime]

COALESCE_S = 0.5
"""A device sent stream entries less than this long ago gets its next ones when the interval is
up, all together (``view_changes``). A quiet device's next change goes out at once; under a
burst each tablet wakes about twice a second, and its CPU goes to entries rather than to
wake-ups (200 tablets on a 2-core box: a wake-up costs more than the entries it brings;
bench_fanout, 50,000 changes to 200 tablets: 20,200 messages at 0.2 s or less, 8,400 at 0.5 s,
4,200 at 1 s; agents' CPU 24.4 -> 15.0 -> 9.6 s; changes/s 1,717 -> 2,064 -> 2,368). The
entries wait in memory only: they are in the changelog already, and a tablet that misses them
(a gateway restart) asks for them as for any gap."""


INGEST_SETTLE_S = 0.5
"""An ingest's refresh request is served this long after the first one since the last refresh,
with whatever more was handed in meanwhile: an export written as a run of batches is merged in
fewer, larger ones (a refresh's cost per change falls with its batch: bench_refresh, 137 us at
500, 115 at 2000), and its changes reach the tablets at most this much later -- as often as a
busy tablet is sent anything (``COALESCE_S``). bench_fanout, 50,000 changes handed in 500 at a
time to 200 tablets: 0.25 s -> 4,933 changes/s, 0.5 s -> 5,469. A driver event, a dispatch
command or the tick merges at once, and takes everything dirty with it."""


WATCH_S = 0.25
"""How often the worker looks whether another process wrote the store (SQLite's
``PRAGMA data_version``): a hand-run ``crossdock gateway ingest`` or anything else writing the
same file while the gateway runs. Its dirty orders are then merged here (``INGEST_SETTLE_S``
later, as an ingest's refresh request is), and stream entries it wrote itself (its own merge)
are published: they reach the tablets within a second instead of at their next quiet
resync."""


def utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


@dataclass(frozen=True)
class _Message:
    topic: str
    payload: bytes


@dataclass(frozen=True)
class _Refresh:
    reason: str


_WATCH = _Refresh("watch")  # the queue was quiet until a look at the store was due


@dataclass(frozen=True)
class _Call:
    fn: Callable[[Store], Any]
    done: threading.Event
    box: list[Any]


class GatewayService(Inbound):
    """The gateway's MQTT side. ``start()``; ``stop()``; ``request_refresh()`` after ingest."""

    def __init__(
        self,
        cfg: GatewayConfig,
        *,
        host: str,
        port: int,
        username: str | None = None,
        password: str | None = None,
        clock: Clock = utc_now,
        status_interval_s: float = 30.0,
        tick_s: float = 1.0,
        coalesce_s: float = COALESCE_S,
        ingest_settle_s: float = INGEST_SETTLE_S,
        event_rate: float = EVENT_RATE_PER_S,
        event_burst: int = EVENT_BURST,
        link: LinkMaker = MqttLink,
    ) -> None:
        """``link`` builds the broker link (``MqttLink`` to ``host:port`` unless a test
        passes another, e.g. the in-memory broker's)."""
        self.cfg = cfg
        self.topics = Topics(cfg.depot)
        self.clock = clock
        self.policy = cfg.merge_policy()
        self.status_interval_s = status_interval_s
        self.tick_s = tick_s
        self.coalesce_s = coalesce_s
        self.ingest_settle_s = ingest_settle_s
        self._refresh_at: float | None = None  # monotonic: an ingest's refresh is due then
        self._next_tick = 0.0  # monotonic: a refresh is due then (escalations), at the latest
        self.watch_s = WATCH_S
        self._next_watch = 0.0  # monotonic
        self._data_version: int | None = None
        self._published: dict[str, int] = {}  # device -> highest seq published (or known)
        self.snapshot_part_chars = SNAPSHOT_PART_CHARS
        self.event_rate, self.event_burst = event_rate, event_burst
        self._buckets: dict[str, TokenBucket] = {}  # device -> its driver-event rate
        # device -> events over its rate, held (driver, event), with their ids
        self._deferred: dict[str, collections.deque[tuple[str, DriverEventMsg]]] = {}
        self._deferred_ids: dict[str, set[str]] = {}
        self._held: dict[str, list[Entry]] = {}  # device -> entries waiting for its interval
        self._sent_at: dict[str, float] = {}  # device -> monotonic time of its last stream send
        self._queue: queue.Queue[_Message | _Refresh | _Call | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._store: Store | None = None
        self._last_status = 0.0
        self._last_housekeeping = 0.0
        self.published = 0  # messages
        self.stream_messages = 0  # of them view_change(s)
        self.published_entries = 0  # stream entries in those
        self._watchers: list[Watcher] = []
        self._repairing = False  # in _resync: what is handed is a repair
        self.ready = threading.Event()
        self.fatal: StoreError | None = None
        """Set when the worker ended because the store cannot be written at all."""
        will = encode(self._status_msg(online=False, counters={}, sources=()))
        self.link: Link = link(
            # the broker makes the username the client id (use_username_as_clientid)
            LinkSettings(host=host, port=port,
                         client_id=username or f"crossdock-gateway-{cfg.depot}",
                         username=username, password=password),
            subscriptions=[self.topics.all_outboxes, self.topics.all_device_status,
                           self.topics.commands],
            on_message=self.receive,
            on_connect=lambda: self._queue.put(_Refresh("connect")),
            on_problem=self._link_problem,
            will=(self.topics.gateway_status, will),
        )

    # --- life cycle ---------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._run, name="crossdock-gateway", daemon=True)
        self._thread.start()
        self.link.start()
        self.ready.wait(timeout)

    def stop(self) -> None:
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.link.stop()

    def receive(self, topic: str, payload: bytes) -> None:
        """A message as the MQTT link hands it in (any topic, any bytes): handled on the worker
        thread in order. The fuzz tests call it directly, without a broker."""
        self._queue.put(_Message(topic, payload))

    def request_refresh(self, reason: str = "ingest") -> None:
        self._queue.put(_Refresh(reason))

    def watch(self, watcher: Watcher) -> None:
        """Tell ``watcher`` (on the worker thread) of every stream message handed to the link
        (``Handed``) and every resync served (``Repaired``). Call before ``start()``."""
        self._watchers.append(watcher)

    def call(self, fn: Callable[[Store], Any], timeout: float = 30.0) -> Any:
        """Run ``fn(store)`` on the worker thread, in order with messages and refresh requests
        (one asked for before is served first), and return its result."""
        done = threading.Event()
        box: list[Any] = []
        self._queue.put(_Call(fn, done, box))
        if not done.wait(timeout):
            raise TimeoutError("gateway worker did not answer")
        if box and isinstance(box[0], BaseException):
            raise box[0]
        return box[0] if box else None

    def _run(self) -> None:
        store = Store(self.cfg.db_path)
        self._store = store
        store.defer_checkpoints()
        checkpointer = Checkpointer(self.cfg.db_path)
        checkpointer.start()
        self._data_version = store.data_version()
        devices = DeviceStore(store)
        # what is in the changelog at start is the tablets' to ask for (resync), not news
        self._published = {d: last for d, (_first, last)
                           in devices.bounds_of(d.device for d in devices.all()).items()}
        self.ready.set()
        try:
            while True:
                try:
                    item = self._queue.get(timeout=self._wait_s())
                except queue.Empty:
                    item = _Refresh("tick") if self._tick_due() else _WATCH
                if item is None:
                    break
                try:
                    if item is not _WATCH:
                        self._handle(store, item)
                    if self._deferred:
                        self._release_deferred(store)
                    now = time.monotonic()
                    if self._refresh_at is not None and now >= self._refresh_at:
                        self._refresh_and_publish(store)
                    elif self._refresh_at is None and now >= self._next_tick:
                        # the tick is due even when messages never let the queue go quiet:
                        # conflicts past their deadline are escalated (and nothing else is
                        # merged early: an ingest's orders wait for its settled refresh)
                        self._next_tick = now + self.tick_s
                        if store.mark_due(self.clock()):
                            self._refresh_and_publish(store)
                    self._watch(store)
                    self._flush(store, self._due())
                except StoreError as exc:
                    if not exc.fatal:
                        log.exception("gateway worker: %r failed", item)
                        continue
                    # the store cannot be written at all: every message after this one would
                    # fail the same way; the worker ends and ``gateway run`` stops with the line
                    self.fatal = exc
                    break
                except Exception:  # the worker must outlive any one bad input
                    log.exception("gateway worker: %r failed", item)
                    try:
                        self._count(store, "worker_errors")
                    except Exception:  # the store itself fails: said above, keep going
                        log.exception("gateway worker: could not count the failure")
                self._housekeeping(store)
        finally:
            try:
                try:  # the held entries are in the changelog: a tablet asks for them anyway
                    self._flush(store, list(self._held))
                except Exception:
                    log.exception("gateway worker: could not send the held stream entries")
                self._publish_status(store, online=False)
                if self.fatal is None:
                    self._record_link(store, None, self.clock(), state="stopped")
            except StoreError as exc:
                log.error("gateway worker: last status not sent: %s", exc)
            finally:
                checkpointer.stop()
                store.close()

    # --- the broker link's state, for `gateway sources` -----------------------------------

    def _link_problem(self, problem: str | None) -> None:
        """From paho's thread: recorded by the worker (never waited for)."""
        now = self.clock()
        self._queue.put(_Call(lambda store: self._record_link(store, problem, now),
                              threading.Event(), []))

    def _record_link(self, store: Store, problem: str | None, now: _dt.datetime,
                     state: str | None = None) -> None:
        record_link(store, url=self.link.where, now=now,
                    state=state or ("connected" if problem is None else "not connected"),
                    problem=problem)

    # --- dispatching inputs -------------------------------------------------------------

    def _handle(self, store: Store, item: _Message | _Refresh | _Call) -> None:
        if isinstance(item, _Call):
            if self._refresh_at is not None:  # asked for before the call: served before it
                self._refresh_and_publish(store)
            try:
                item.box.append(item.fn(store))
            except BaseException as exc:  # handed back to the caller's thread
                item.box.append(exc)
            item.done.set()
            return
        if isinstance(item, _Refresh):
            self._coalesce_refreshes()
            if item.reason == "tick" and self._refresh_at is not None and (
                    time.monotonic() < self._refresh_at):
                return  # an ingest's refresh is due shortly: the tick's would take its orders
            if item.reason in ("connect", "tick") or self.ingest_settle_s <= 0:
                self._refresh_and_publish(store)
            elif self._refresh_at is None:
                self._refresh_at = time.monotonic() + self.ingest_settle_s
            return
        self._message(store, item.topic, item.payload)

    def _coalesce_refreshes(self) -> None:
        """Drop the refresh requests queued right behind the one being handled: one refresh
        takes every dirty order, so back-to-back requests need one. Anything else queued
        stays where it is, in order (a message or call behind them ends the run)."""
        q = self._queue
        with q.mutex:
            dropped = 0
            while q.queue and isinstance(q.queue[0], _Refresh):
                q.queue.popleft()
                dropped += 1
            if dropped:
                q.unfinished_tasks -= dropped
                if not q.unfinished_tasks:
                    q.all_tasks_done.notify_all()
                q.not_full.notify(dropped)

    def _tick_due(self) -> bool:
        due = self._next_tick if self._refresh_at is None else self._refresh_at
        return time.monotonic() >= due

    def _wait_s(self) -> float:
        """How long the worker may wait for input: until the next tick, an ingest's refresh
        is due (it then runs as a tick), or the first held entries' device may be sent to."""
        due = [self._next_tick if self._refresh_at is None else self._refresh_at,
               self._next_watch]
        if self._held:
            due.append(min(self._sent_at.get(d, float("-inf")) for d in self._held)
                       + self.coalesce_s)
        return max(0.0, min(self.tick_s, min(due) - time.monotonic()))

    # --- status and housekeeping --------------------------------------------------------

    def _status_msg(self, *, online: bool, counters: dict[str, int],
                    sources: tuple[SourceFreshness, ...]) -> StatusMsg:
        now = self.clock()
        return ENVELOPE.validate_python({
            "v": 1, "kind": "status", "id": f"gateway-status-{uuid.uuid4().hex[:12]}",
            "origin": "gateway", "hlc": f"{int(now.timestamp() * 1000):015d}-000000-gateway",
            "body": Status(role="gateway", online=online, at=now, app_version=package_version(),
                           sources=sources, counters=counters).model_dump(),
        })  # type: ignore[return-value]

    def _publish_status(self, store: Store, *, online: bool = True) -> None:
        sources = tuple(
            SourceFreshness(
                source=row["source"],
                as_of=_dt.datetime.fromisoformat(row["as_of"]) if row["as_of"] else None,
                cadence_s=row["cadence_s"],
                last_run_at=(_dt.datetime.fromisoformat(row["last_run_at"])
                             if row["last_run_at"] else None),
                last_ok_at=(_dt.datetime.fromisoformat(row["last_ok_at"])
                            if row["last_ok_at"] else None),
                last_error=row["last_error"],
            )
            for row in source_freshness(store, self.cfg)
        )
        counters = DeviceStore(store).counters()
        counters.update(DeviceStore(store).refused_counts())  # from the events kept, not bumps
        msg = self._status_msg(online=online, counters=counters, sources=sources)
        self.link.publish(self.topics.gateway_status, encode(msg), retain=True)

    def publish_status(self) -> None:
        self.call(lambda store: self._publish_status(store))

    def _housekeeping(self, store: Store) -> None:
        now = time.monotonic()
        if now - self._last_status >= self.status_interval_s and self.link.connected.is_set():
            self._last_status = now
            self._publish_status(store)
        if now - self._last_housekeeping >= 60:
            self._last_housekeeping = now
            with store.transaction():
                commands.expire_proposals(store, self.clock(),
                                          on_expiry=self.cfg.policy.approval_expiry)
                devices = DeviceStore(store)
                for device in devices.all():
                    devices.compact(device.device, self.cfg.policy.changelog_keep)
