"""The running gateway: MQTT in and out, one worker thread owning the store's stream side.

Thread model: paho's network thread only puts ``(topic, payload)`` on a queue; the scheduler's
jobs ingest in their own threads with their own Store and then put a refresh request on the
same queue. One worker thread takes from the queue, owns a Store, applies driver events and
dispatch commands, merges, appends to device streams and publishes — so entries leave in
``seq`` order and a slow or bad message never blocks anything but itself.

Every inbound message is decoded by ``sync.codec``; a malformed, oversize, unknown-version or
unauthorized one is logged with its topic, counted (the counters are in ``gateway/status``) and
dropped; the next message is handled as usual.
"""

from __future__ import annotations

import collections
import datetime as _dt
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.config import GatewayConfig
from gateway.errors import CommandError, StoreError
from gateway.store.checkpointer import Checkpointer
from gateway.store.core import Store
from gateway.store.devices import DeviceStore, Entry
from gateway.streams import commands
from gateway.streams.limits import DEFERRED_MAX, EVENT_BURST, EVENT_RATE_PER_S, TokenBucket
from gateway.streams.link import Link, LinkMaker
from gateway.streams.mqtt import LinkSettings, MqttLink
from gateway.streams.status import record_link, source_freshness
from gateway.streams.views import refresh
from gateway.streams.watch import Handed, Repaired, Watcher
from gateway.streams.wire import (
    READS_REFUSALS,
    READS_VIEW_CHANGES,
    SNAPSHOT_PART_CHARS,
    batches,
    older_than,
    snapshot_bytes,
    snapshot_parts,
    view_change_bytes,
    view_changes_bytes,
)
from sync.codec import decode, encode
from sync.envelope import (
    ENVELOPE,
    Ack,
    AckMsg,
    AppliedMsg,
    DispatchCommandMsg,
    DispatchReply,
    DispatchReplyMsg,
    DriverEvent,
    DriverEventMsg,
    Refusal,
    ResyncMsg,
    SourceFreshness,
    Status,
    StatusMsg,
)
from sync.errors import CodecError
from sync.streams import Replay, SendSnapshot, plan_repair
from sync.topics import Topics

log = logging.getLogger(__name__)
VERSION = "0.3.0"

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


class GatewayService:
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

    def _tell(self, event: Handed | Repaired) -> None:
        for watcher in self._watchers:
            watcher(event)

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

    def _message(self, store: Store, topic: str, payload: bytes) -> None:
        if not payload:
            return  # a cleared retained message
        try:
            env = decode(payload)
        except CodecError as exc:
            log.warning("bad message on %s: %s", topic, exc)
            self._count(store, "bad_messages", f"bad_messages_{exc.reason}")
            return
        if topic == self.topics.commands:
            if isinstance(env, DispatchCommandMsg):
                self._command(store, env)
            else:
                self._unauthorized(store, topic, f"{env.kind} is not a dispatch command")
            return
        device = self.topics.device_of(topic)
        if device is None:
            self._unauthorized(store, topic, "not a crossdock topic")
            return
        registered = DeviceStore(store).get(device)
        if registered is None:
            self._unauthorized(store, topic, f"device {device} is not registered")
            return
        if registered.revoked:  # sent before the broker dropped it, or by a broker not ours
            self._unauthorized(store, topic, f"device {device} is revoked")
            self._count(store, "revoked_messages")
            return
        if env.origin != device:
            self._unauthorized(store, topic, f"origin {env.origin!r} is not device {device}")
            return
        if topic == self.topics.device_status(device) and isinstance(env, StatusMsg):
            with store.transaction():
                DeviceStore(store).set_status(device, env.body.online,
                                              env.body.model_dump_json(), self.clock())
            if env.body.online and older_than(env.body.app_version, READS_VIEW_CHANGES):
                log.warning("device %s runs crossdock %s, which cannot read view_changes "
                            "(needs %s): upgrade the tablet", device, env.body.app_version,
                            ".".join(map(str, READS_VIEW_CHANGES)))
                self._count(store, "outdated_devices")
        elif topic == self.topics.outbox(device):
            if isinstance(env, DriverEventMsg):
                # made before a re-bind: checked against the route the tablet had then
                self._limited_event(store, device, registered.driver_at(env.body.at), env)
            elif isinstance(env, ResyncMsg):
                self._resync(store, device, env.body.after)
            elif isinstance(env, AppliedMsg):
                with store.transaction():
                    DeviceStore(store).set_applied(device, env.body.seq, self.clock())
            else:
                self._unauthorized(store, topic, f"{env.kind} does not belong on an outbox")
        else:
            self._unauthorized(store, topic, f"{env.kind} does not belong on this topic")

    def _unauthorized(self, store: Store, topic: str, why: str) -> None:
        log.warning("refused message on %s: %s", topic, why)
        self._count(store, "unauthorized_messages")

    def _count(self, store: Store, *names: str) -> None:
        with store.transaction():
            for name in names:
                DeviceStore(store).bump(name)

    # --- driver events ------------------------------------------------------------------

    def _limited_event(self, store: Store, device: str, driver: str, env: DriverEventMsg
                       ) -> None:
        """``_driver_event`` within the device's event rate (``gateway.streams.limits``); an
        event over it is held, and the tablet told (an ack with ``delayed``), never dropped."""
        now = time.monotonic()
        bucket = self._buckets.get(device)
        if bucket is None:
            bucket = self._buckets[device] = TokenBucket.full(self.event_rate,
                                                              self.event_burst, now)
        if device not in self._deferred and bucket.take(now):
            self._driver_event(store, device, driver, env)
            return
        held = self._deferred.setdefault(device, collections.deque())
        ids = self._deferred_ids.setdefault(device, set())
        event_id = env.body.event_id
        if event_id in ids:  # a resend of one held already: it is answered when handled
            return
        if len(held) >= DEFERRED_MAX:  # not acked: it stays in the outbox, resent later
            self._count(store, "rate_limited_events", "rate_limited_unheld")
            return
        held.append((driver, env))
        ids.add(event_id)
        self._count(store, "rate_limited_events")
        self._publish(self.topics.acks(device), AckMsg(
            v=1, kind="ack", id=f"delayed-{event_id}", origin="gateway", hlc=self._hlc(store),
            body=Ack(delayed=(event_id,),
                     retry_after_s=round(len(held) / self.event_rate + bucket.wait_s(), 1))))

    def _release_deferred(self, store: Store) -> None:
        """Handle held events as their devices' rates allow (after every input)."""
        now = time.monotonic()
        for device in list(self._deferred):
            held, bucket = self._deferred[device], self._buckets[device]
            while held and bucket.take(now):
                driver, env = held.popleft()
                self._deferred_ids[device].discard(env.body.event_id)
                self._driver_event(store, device, driver, env)
            if not held:
                del self._deferred[device]

    def _driver_event(self, store: Store, device: str, driver: str, env: DriverEventMsg) -> None:
        event = env.body
        now = self.clock()
        devices = DeviceStore(store)
        with store.transaction(durable=True):  # acknowledged below: the tablet forgets it
            outcome = devices.event_outcome(device, event.event_id)  # per device
            if outcome is None:
                if event.action == "dismiss":
                    outcome = _dismiss(devices, device, event, now)
                else:
                    outcome = commands.driver_event(store, device, driver, event,
                                                    policy=self.policy, now=now)
                devices.record_event(event.event_id, device, event.order_id, event.action,
                                     event.model_dump_json(), outcome, now)
                devices.bump("driver_events")
                if outcome != "applied":
                    devices.bump("refused_events")
                    log.warning("refused event on %s: %s %s", self.topics.outbox(device),
                                event.event_id, outcome)
            else:
                devices.bump("duplicate_events")
            hlc = store.next_hlc(self.clock())  # the ack's stamp, in the event's transaction
            # a tablet that reads refusals hears the reason; an older one a plain ack
            version = devices.app_version(device)  # "" before its first status: an old one
            tells_refusals = bool(version) and not older_than(version, READS_REFUSALS)
        # stored durably (committed): now it may be acknowledged
        if outcome != "applied" and tells_refusals:
            reason = outcome.removeprefix("refused: ")
            ack = Ack(refused=(Refusal(event_id=event.event_id, reason=reason[:500]),))
        else:
            ack = Ack(event_ids=(event.event_id,))
        self._publish(self.topics.acks(device), AckMsg(
            v=1, kind="ack", id=f"ack-{event.event_id}", origin="gateway", hlc=hlc, body=ack))
        self._refresh_and_publish(store)

    # --- dispatch commands --------------------------------------------------------------

    def _command(self, store: Store, env: DispatchCommandMsg) -> None:
        cmd = env.body
        now = self.clock()
        devices = DeviceStore(store)
        previous = devices.reply_of(env.id)
        if previous is not None:  # a resent command gets the answer it got the first time
            self.link.publish(self.topics.replies(cmd.client), previous.encode())
            return
        try:
            with store.transaction(durable=True):  # answered below: dispatch may forget it
                detail = self._apply_command(store, env, now)
                reply = self._reply(store, env.id, ok=True, detail=detail)
                devices.record_command(env.id, cmd.client, cmd.model_dump_json(),
                                       reply.decode(), now)
        except CommandError as exc:
            reply = self._reply(store, env.id, ok=False, reason=str(exc))
            with store.transaction():
                devices.record_command(env.id, cmd.client, cmd.model_dump_json(),
                                       reply.decode(), now)
                devices.bump("refused_commands")
        except Exception as exc:  # a bug or a failing store: rolled back, said, not recorded
            log.exception("dispatch command %s (%s %s) failed", env.id, cmd.action,
                          getattr(cmd, "order_id", getattr(cmd, "proposal_id", "")))
            # answered without the store (it may be what fails): a stamp from the clock alone
            reply = self._reply(
                None, env.id, ok=False,
                reason=f"the gateway could not apply it ({type(exc).__name__}, see its log); "
                       "nothing was changed, it may be sent again")
            self.link.publish(self.topics.replies(cmd.client), reply)
            self._count(store, "failed_commands")  # if the store fails too: the worker logs it
            return
        self.link.publish(self.topics.replies(cmd.client), reply)
        self._refresh_and_publish(store)

    def _apply_command(self, store: Store, env: DispatchCommandMsg, now: _dt.datetime
                       ) -> dict[str, Any]:
        cmd = env.body
        if cmd.action == "assign":
            return commands.assign(store, cmd, command_id=env.id, policy=self.policy, now=now)
        if cmd.action == "cancel":
            return commands.cancel(store, cmd, command_id=env.id, policy=self.policy, now=now)
        if cmd.action == "resolve":
            return commands.resolve(store, cmd, command_id=env.id, policy=self.policy, now=now)
        if cmd.action == "approve":
            return commands.approve(store, cmd, policy=self.policy, now=now)
        return commands.reject(store, cmd, now=now)

    def _reply(self, store: Store | None, command_id: str, *, ok: bool, reason: str = "",
               detail: dict[str, Any] | None = None) -> bytes:
        """A reply, stamped by the store's clock (None: by the wall clock alone, not stored)."""
        if store is None:
            hlc = f"{int(self.clock().timestamp() * 1000):015d}-000000-gateway"
        else:
            hlc = self._hlc(store)
        return encode(DispatchReplyMsg(
            v=1, kind="dispatch_reply", id=f"reply-{command_id}", origin="gateway",
            hlc=hlc,
            body=DispatchReply(command_id=command_id, ok=ok, reason=reason,
                               detail=json.loads(json.dumps(detail or {}, default=str)))))

    # --- streams ------------------------------------------------------------------------

    def _refresh_and_publish(self, store: Store) -> None:
        """Merge what is dirty; each device's new entries go out now, or with the next ones
        when the device was sent some less than ``coalesce_s`` ago (``COALESCE_S``)."""
        self._refresh_at = None  # this refresh takes what the ingest's was to take
        self._next_tick = time.monotonic() + self.tick_s  # and does what a tick does

        def hold(entries: dict[str, list[Entry]]) -> None:
            for device, device_entries in entries.items():
                if device_entries:
                    self._held.setdefault(device, []).extend(device_entries)
            self._flush(store, self._due())

        hold(refresh(store, self.policy, self.clock(), on_batch=hold))

    def _tick_due(self) -> bool:
        due = self._next_tick if self._refresh_at is None else self._refresh_at
        return time.monotonic() >= due

    def _watch(self, store: Store) -> None:
        """Every ``watch_s``: when another process committed to the store since the last look,
        merge what it left dirty and publish the stream entries it wrote (``WATCH_S``)."""
        now = time.monotonic()
        if now < self._next_watch:
            return
        self._next_watch = now + self.watch_s
        version = store.data_version()
        if version == self._data_version:
            return
        self._data_version = version
        if store.dirty_count():  # merged as an ingest's refresh request is: once it settles
            if self.ingest_settle_s <= 0:
                self._refresh_and_publish(store)
            elif self._refresh_at is None:
                self._refresh_at = now + self.ingest_settle_s
        self._catch_up(store)

    def _catch_up(self, store: Store) -> None:
        """Hold, for publishing, the changelog entries no one here published or holds: those
        another process (a hand-run ingest's merge) appended."""
        devices = DeviceStore(store)
        for device, (first, last) in devices.bounds_of(d.device for d in devices.all()).items():
            published = self._published.get(device, 0)
            if last <= published:
                continue
            held = self._held.get(device, [])
            have = {e.seq for e in held}
            missing = [q for q in range(max(first, published + 1), last + 1) if q not in have]
            if not missing:
                continue
            wanted = set(missing)
            found = [e for e in devices.entries(device, missing[0], missing[-1])
                     if e.seq in wanted]
            if found:
                self._held[device] = sorted([*held, *found], key=lambda e: e.seq)

    def _due(self) -> list[str]:
        """The devices whose held entries may go out now."""
        now = time.monotonic()
        return [d for d in self._held
                if now - self._sent_at.get(d, float("-inf")) >= self.coalesce_s]

    def _wait_s(self) -> float:
        """How long the worker may wait for input: until the next tick, an ingest's refresh
        is due (it then runs as a tick), or the first held entries' device may be sent to."""
        due = [self._next_tick if self._refresh_at is None else self._refresh_at,
               self._next_watch]
        if self._held:
            due.append(min(self._sent_at.get(d, float("-inf")) for d in self._held)
                       + self.coalesce_s)
        return max(0.0, min(self.tick_s, min(due) - time.monotonic()))

    def _flush(self, store: Store, due: list[str]) -> None:
        """Publish the held entries of these devices: each device's in one message (or a few:
        ``batches``), with the stream's head."""
        if not due:
            return
        with store.transaction():  # one stamp for the flush, every device's head
            hlc = store.next_hlc(self.clock())
            bounds = DeviceStore(store).bounds_of(due)
        now = time.monotonic()
        for device in due:
            held = self._held.pop(device, [])
            if held:
                head = bounds.get(device, (1, held[-1].seq))[1]
                self._publish_entries(store, device, held, hlc=hlc, head=head)
            self._sent_at[device] = now

    def _publish_entries(self, store: Store, device: str, entries: list[Entry], *,
                         hlc: str | None = None, head: int | None = None) -> None:
        if not entries:
            return
        topic = self.topics.inbox(device)
        if hlc is None:
            hlc = self._hlc(store)
        if head is None:
            head = DeviceStore(store).bounds(device)[1]
        self._published[device] = max(self._published.get(device, 0), entries[-1].seq)
        for group in batches(entries):
            if len(group) == 1:
                payload = view_change_bytes(device, group[0], hlc=hlc, head=head)
            else:
                payload = view_changes_bytes(device, group, hlc=hlc, head=head)
            self.link.publish(topic, payload)
            self.published += 1
            self.stream_messages += 1
            self.published_entries += len(group)
            if self._watchers:
                self._tell(Handed(device, topic, len(payload), len(group), self._repairing))

    def _resync(self, store: Store, device: str, after: int) -> None:
        started = time.perf_counter()
        self._repairing = True
        try:
            plan = self._repair(store, device, after)
        finally:
            self._repairing = False
        if self._watchers:
            self._tell(Repaired(device, after, plan, time.perf_counter() - started))

    def _repair(self, store: Store, device: str, after: int) -> str:
        self._held.pop(device, None)  # in the changelog: the repair below sends what is due
        devices = DeviceStore(store)
        first, last = devices.bounds(device)
        plan = plan_repair(after, first=first, last=last)
        if isinstance(plan, Replay):
            self._publish_entries(store, device, devices.entries(device, plan.first, plan.last))
            self._sent_at[device] = time.monotonic()
            self._count(store, "replays")  # a repair served: gateway/status shows how many
            return "replay"
        if isinstance(plan, SendSnapshot):
            with store.transaction():
                seq, bodies = devices.snapshot(device)
                devices.bump("snapshots")
            self._published[device] = max(self._published.get(device, 0), seq)
            hlc = self._hlc(store)
            parts = snapshot_parts(bodies, self.snapshot_part_chars)
            for part, chunk in enumerate(parts, start=1):
                payload = snapshot_bytes(device, seq, chunk, hlc=hlc, part=part,
                                         parts=len(parts))
                self.link.publish(self.topics.inbox(device), payload)
                self.published += 1
                if self._watchers:
                    self._tell(Handed(device, self.topics.inbox(device), len(payload), 0, True))
            self._sent_at[device] = time.monotonic()
            return "snapshot"
        return "up to date"

    def _publish(self, topic: str, msg: Any) -> None:
        self.link.publish(topic, encode(msg))
        self.published += 1

    def _hlc(self, store: Store) -> str:
        with store.transaction():
            return store.next_hlc(self.clock())


    # --- status and housekeeping --------------------------------------------------------

    def _status_msg(self, *, online: bool, counters: dict[str, int],
                    sources: tuple[SourceFreshness, ...]) -> StatusMsg:
        now = self.clock()
        return ENVELOPE.validate_python({
            "v": 1, "kind": "status", "id": f"gateway-status-{uuid.uuid4().hex[:12]}",
            "origin": "gateway", "hlc": f"{int(now.timestamp() * 1000):015d}-000000-gateway",
            "body": Status(role="gateway", online=online, at=now, app_version=VERSION,
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


def _dismiss(devices: DeviceStore, device: str, event: DriverEvent, now: _dt.datetime) -> str:
    """A driver saw a refusal: recorded against the refused event it names, same device only."""
    target = event.dismisses or ""  # never empty: DriverEvent requires it with dismiss
    outcome = devices.event_outcome(device, target)  # event ids are unique per device
    if outcome is None:
        return f"refused: no event {target} of device {device} to dismiss"
    if outcome == "applied":
        return f"refused: event {target} was applied, not refused"
    devices.record_dismissal(target, device, event.event_id, now)
    return "applied"
