"""The tablet agent: the API the UI calls and ``crossdock agent run`` runs.

``Agent`` joins the store (``agent.store``), the MQTT session (``agent.session``) and the pure
stream rules (``sync.streams``):

* the inbox stream comes as ``view_change`` (one entry) or ``view_changes`` (consecutive
  entries; a single entry is handled as a batch of one, on the same path) and is judged by
  ``sync.streams.receive_batch``: entries from ``last + 1`` on are applied in ONE transaction
  with the last one's ``seq`` (``Store.apply_changes``), duplicates are counted (each entry)
  and dropped, a gap sends ``Resync(after=last)`` once; every (re)connect and every
  ``resync_quiet_s`` without stream progress sends one too (``sync.streams.restart``), so a
  tablet that was away catches up whatever the broker kept; so does a gap with no progress for
  ``GAP_RETRY_S`` (the request or its replay was lost); a snapshot replaces the views;
* the last applied ``seq`` is reported with ``Applied`` only when it moved, at most every
  ``APPLIED_EVERY_S`` (the first one after a connect at once); the stamp of an ``Applied``
  (as of any status-like message) is stored without fsync (``synchronous=NORMAL``) — only a
  driver action's is FULL;
* a driver action is recorded (local overlay + outbox row) in one transaction, then published
  if online; the outbox is resent on every reconnect (``REPLAY_WINDOW`` at a time, more as
  acks come back) until each event is acked;
* the broker makes a connection's client id its username (``use_username_as_clientid``), so a
  device has ONE MQTT session: ``agent run`` (``start()``) holds ``<db>.run.lock`` while it
  runs, and ``agent act`` (``start(follow_stream=False)``) does not connect while another
  process holds it (it would replace that agent's connection): the running agent looks for
  outbox rows written by another process every ``HANDOVER_POLL_S`` (``PRAGMA data_version``,
  no disk read) and sends them; ``act`` waits for their ack in the store.

Thread model: ONE re-entrant lock guards the store and the agent's own state. Paho's network
thread (session callbacks), the agent's ticker thread (quiet resync, ``Applied``) and the
caller's thread (UI, CLI) all take it for their store work. Nothing is published and no
observer is called while holding it: each step collects its outgoing messages and its changes
under the lock, then publishes and notifies after releasing it, so a slow observer or paho's
own locks can never deadlock against the store. Observers run on whichever thread made the
change and must hand UI work to their own thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from agent.config import AgentConfig
from agent.errors import ActionError
from agent.model import (
    ACTION_STATUS,
    Change,
    ChangeKind,
    LocalAction,
    OutboxItem,
    RouteStop,
    SyncStatus,
    age,
)
from agent.session import Incoming, MqttSession, Outgoing, SessionSettings, Transport
from agent.store import Store
from sync.codec import encode
from sync.envelope import (
    AckMsg,
    Applied,
    AppliedMsg,
    DriverAction,
    DriverEvent,
    DriverEventMsg,
    Resync,
    ResyncMsg,
    Snapshot,
    SnapshotMsg,
    Status,
    StatusMsg,
    ViewChange,
    ViewChangeMsg,
    ViewChangesMsg,
)
from sync.errors import CodecError, SyncError
from sync.hlc import Hlc, observe
from sync.model import Conflict, OrderView
from sync.streams import receive_batch, restart, snapshot
from sync.topics import Topics

log = logging.getLogger(__name__)

TICK_S = 0.25
"""How often the ticker looks while a gap or observers not yet told are pending, and the
soonest it does anything after a message. Otherwise it sleeps until the next thing is due (an
``Applied``, the quiet resync), or until a message makes something due sooner: an idle
tablet, or one of 200 on a depot's box, does not wake four times a second for nothing."""

APPLIED_EVERY_S = 2.0
"""How often, at most, the agent reports its last applied ``seq``; the last one of a burst goes
within this long. (Reporting each burst's end at once cost the gateway one message per stream
message under load: 11,793 ``Applied`` in a 50,000-change fan-out to 200 tablets.)"""

REPLAY_WINDOW = 100
"""Outbox rows resent at once on a reconnect; each ack lets as many more go. A tablet back
from days offline with thousands of actions does not send them all in one burst (the gateway
would hold most of them over its event rate, ``gateway.streams.limits``)."""

HANDOVER_POLL_S = 2.0
"""How often an online ``agent run`` checks whether another process (``agent act``) wrote to
its store (one ``PRAGMA data_version``: the WAL index in shared memory, no disk read), and
sends the actions it finds: an idle online tablet wakes this often (it slept until its quiet
resync before), which ``agent act --wait``'s default of 5 s allows for. ``agent act`` cannot
connect beside it: the broker gives a device one connection (``use_username_as_clientid``)."""

GAP_RETRY_S = 2.0
"""After a gap, a stream quiet for this long (capped by ``resync_quiet_s``) may mean the resync
request or part of its replay was lost (a broker restart before the gateway re-subscribed, a
broker queue that dropped the replay's tail): ask again rather than wait out the quiet timeout.
If nothing was lost the gateway answers "up to date" by sending nothing."""

ACTIONS: tuple[str, ...] = get_args(DriverAction)

Observer = Callable[[Change], None]
TransportMaker = Callable[[SessionSettings, "Agent"], Transport]


def _new_id() -> str:
    return uuid.uuid4().hex


def _app_version() -> str:
    try:
        return importlib.metadata.version("crossdock")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _mqtt(settings: SessionSettings, agent: Agent) -> Transport:
    return MqttSession(settings, agent)


class Agent:
    """One tablet's agent. Usable without ``start()`` (offline: route, act, state)."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = _new_id,
        transport: TransportMaker = _mqtt,
        app_version: str | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._new_id = new_id
        self._make_transport = transport
        self._app_version = app_version if app_version is not None else _app_version()
        self._topics = Topics(config.depot)
        # checked and built once (every message is matched against them)
        self._inbox_topic = self._topics.inbox(config.device)
        self._acks_topic = self._topics.acks(config.device)
        self._outbox_topic = self._topics.outbox(config.device)
        self._store = Store.open(config.db)
        self._lock = threading.RLock()
        self._observers: list[Observer] = []
        self._transport: Transport | None = None
        self._follow = True
        self._ticker: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake = threading.Event()  # set: the ticker should look now (it may be sleeping long)
        self._ticker_idle = False  # the ticker sleeps past TICK_S, until _ticker_until or a nudge
        self._ticker_until = float("inf")  # clock() at which an idle ticker looks again
        self._closed = False
        self._last_progress = clock()
        self._applied_sent = -1
        self._applied_dirty = False  # the applied seq moved since the last Applied sent
        self._applied_at = float("-inf")  # clock() of the last Applied sent
        self._behind = False  # a gap was seen since the last resync request
        self._unnotified: set[ChangeKind] = set()  # changes of a burst not yet told observers
        self._snapshot_parts: dict[int, tuple[OrderView, ...]] = {}  # part -> its views
        self._snapshot_seq: tuple[int, int] = (-1, 0)  # (seq, parts) of the parts held
        self._run_lock: int | None = None  # fd holding <db>.run.lock while this agent runs
        self._replay: list[tuple[str, bytes]] = []  # outbox rows still to resend since connect
        self.handed_over = False
        """True when ``start(follow_stream=False)`` found an ``agent run`` holding the device:
        nothing was connected; that agent sends the outbox."""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, *, follow_stream: bool = True) -> None:
        """Connect (in the background; offline is fine) and keep syncing until ``stop()``.

        ``follow_stream=False`` is the one-shot mode of ``agent act``: a separate, clean MQTT
        session that only sends the outbox and takes acks, so it never competes with a running
        ``agent run`` for the device's persistent session or its stream.
        """
        if self._transport is not None:
            return
        device = self.config.device
        self._follow = follow_stream
        b, s = self.config.broker, self.config.sync
        lock = self._take_run_lock()
        if follow_stream:
            self._run_lock = lock
        elif lock is None:
            self.handed_over = True  # an agent run holds the device's one session
            return
        else:
            os.close(lock)
        # the broker takes the username as the client id (use_username_as_clientid); sending
        # it makes the broker's log and session names the ones the client used
        client_id = b.username or f"crossdock-{device}"
        if follow_stream:
            subscriptions: tuple[str, ...] = (
                self._topics.inbox(device),
                self._topics.acks(device),
                self._topics.gateway_status,
            )
            with self._lock:
                offline = self._status(online=False)
            will = Outgoing(self._topics.device_status(device), offline, retain=True)
        else:
            if not b.username:  # an anonymous broker keeps client ids as they are
                client_id = f"crossdock-{device}-act-{self._new_id()[:8]}"
            subscriptions = (self._topics.acks(device),)
            will = None
        settings = SessionSettings(
            client_id=client_id,
            host=b.host,
            port=b.port,
            subscriptions=subscriptions,
            session_expiry_s=s.session_expiry_s if follow_stream else 0,
            clean_start=not follow_stream,
            username=b.username,
            password=b.password,
            tls=b.tls,
            ca_file=b.ca_file,
            backoff_min_s=s.backoff_min_s,
            backoff_max_s=s.backoff_max_s,
            will=will,
        )
        self._transport = self._make_transport(settings, self)
        self._transport.start()
        self._ticker = threading.Thread(target=self._tick_loop, name="agent-ticker", daemon=True)
        self._ticker.start()

    def stop(self) -> None:
        """Say "offline" (retained), disconnect, and close the store. Safe to call twice."""
        if self._closed:
            return
        self._stopping.set()
        self._wake.set()
        if self._ticker is not None:
            self._ticker.join()
        transport = self._transport
        if transport is not None:
            final = None
            if self._follow:
                with self._lock:
                    status = self._status(online=False)
                final = Outgoing(self._topics.device_status(self.config.device), status, True)
            transport.stop(final=final)
            if self._follow:  # presence belongs to the session that follows the stream
                with self._lock:
                    self._store.set_presence(False, at=self._now())
        with self._lock:
            self._closed = True
            self._store.close()
        if self._run_lock is not None:
            os.close(self._run_lock)
            self._run_lock = None

    close = stop

    def _take_run_lock(self) -> int | None:
        """An fd holding ``<db>.run.lock`` (exclusive), or None when another process holds it."""
        path = self.config.db.with_name(self.config.db.name + ".run.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        return fd

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the API the UI calls ----------------------------------------------------------------

    def route(self) -> list[RouteStop]:
        """The order views with the driver's not-yet-reflected actions overlaid, in route order."""
        with self._lock:
            views = self._store.views()
            actions = self._store.local_actions()
        by_order: dict[str, list[LocalAction]] = {}
        for action in actions:
            by_order.setdefault(action.order_id, []).append(action)
        stops = [_stop(v, tuple(by_order.get(v.order_id, ()))) for v in views]
        return sorted(stops, key=_route_key)

    def conflicts(self) -> list[Conflict]:
        with self._lock:
            views = self._store.views()
        return [c for v in views for c in v.conflicts()]

    def pending(self) -> list[OutboxItem]:
        """The outbox: actions not yet acknowledged by the gateway, oldest first."""
        with self._lock:
            return self._store.pending()

    def sync_status(self) -> SyncStatus:
        now = self._now()
        with self._lock:
            store = self._store
            stored_online, online_since, offline_since = store.presence()
            transport = self._transport
            online = stored_online if transport is None else transport.connected
            pending = store.pending()
            gateway = store.gateway_status()
            counters = store.counters()
            last_sync = store.last_sync_at()
            last_seq = store.receiver().last
        return SyncStatus(
            online=online,
            online_since=online_since if online else None,
            offline_since=None if online else offline_since,
            last_sync_at=last_sync,
            last_sync_age_s=age(last_sync, now),
            outbox_size=len(pending),
            oldest_pending_at=pending[0].created_at if pending else None,
            last_seq=last_seq,
            gateway_online=None if gateway is None else gateway.online,
            gateway_status_at=None if gateway is None else gateway.at,
            sources=() if gateway is None else gateway.sources,
            codec_errors=counters.get("codec_errors", 0),
            counters=counters,
        )

    def subscribe(self, callback: Observer) -> Callable[[], None]:
        """Call ``callback(change)`` after any change; returns a function that unsubscribes."""
        with self._lock:
            self._observers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._observers:
                    self._observers.remove(callback)

        return unsubscribe

    def act(
        self,
        action: str,
        order_id: str,
        *,
        reason: str | None = None,
        note: str | None = None,
        field: str | None = None,
        choose: str | None = None,
    ) -> str:
        """Record a driver action durably, then send it if online. Returns its event id.

        ``based_on`` is the claim ids of the order's current candidates (for ``resolve``: of
        the field's), i.e. what the driver saw when tapping. ``choose`` for ``resolve`` is a
        candidate's claim id or source name.
        """
        if action not in ACTIONS:
            raise ActionError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
        with self._lock:
            view = self._store.view(order_id)
            if view is None:
                last = self._store.receiver().last
                raise ActionError(
                    f"order {order_id} is not on this tablet's route (synced to seq {last}); "
                    "check the order id or wait for the route to sync"
                )
            based_on, choose_id = _based_on(view, action, field, choose)
            now = self._now()
            event_id = self._new_id()
            stamp = self._store.next_stamp(self.config.device, _ms(self._clock()))
            try:
                event = DriverEvent(
                    event_id=event_id,
                    order_id=order_id,
                    action=action,
                    at=now,
                    reason=reason,
                    note=note,
                    based_on=based_on,
                    field=field,
                    choose=choose_id,
                )
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in err["loc"])
                raise ActionError(f"order {order_id}: {action}: {where}: {err['msg']}") from None
            message = DriverEventMsg(
                v=1,
                kind="driver_event",
                id=event_id,
                origin=self.config.device,
                hlc=str(stamp),
                body=event,
            )
            self._store.record_action(message, created_at=now)
        self._send([(event_id, Outgoing(self._outbox_topic, encode(message)))])
        self._notify({"route", "sync"})
        return event_id

    def wait_online(self, timeout: float) -> bool:
        """Wait until the session is online; False after ``timeout`` seconds."""
        return self.wait_for(
            lambda: self._transport is not None and self._transport.connected, timeout
        )

    def wait_acked(self, event_id: str, timeout: float) -> bool:
        """Wait until the gateway acked ``event_id``; False after ``timeout`` seconds."""

        def acked() -> bool:
            with self._lock:
                return all(item.event_id != event_id for item in self._store.pending())

        return self.wait_for(acked, timeout)

    # -- SessionHandler (paho's network thread) ------------------------------------------------

    def session_online(self) -> None:
        out: list[tuple[str | None, Outgoing]] = []
        with self._lock:
            if self._closed:
                return
            if self._follow:
                self._store.set_presence(True, at=self._now())
                out.append((None, self._ask_again()))
                self._report_applied_at_once()
                status = self._status(online=True)
                out.append(
                    (None, Outgoing(self._topics.device_status(self.config.device), status, True))
                )
            # the outbox, oldest first, REPLAY_WINDOW at a time: the rest as acks come back
            self._replay = self._store.pending_payloads()
            out += self._next_replay(REPLAY_WINDOW)
        self._send(out)
        self._nudge()
        self._notify({"sync"})

    def _next_replay(self, n: int) -> list[tuple[str | None, Outgoing]]:
        """The next ``n`` outbox rows of the replay begun at the last connect (under the
        lock)."""
        batch, self._replay = self._replay[:n], self._replay[n:]
        return [(event_id, Outgoing(self._outbox_topic, payload)) for event_id, payload in batch]

    def session_offline(self, reason: str) -> None:
        log.info("offline: %s", reason)
        with self._lock:
            if self._closed or not self._follow:
                return
            self._store.set_presence(False, at=self._now())
        self._notify({"sync"})

    def session_bad_message(self, topic: str, error: CodecError) -> None:
        with self._lock:
            if self._closed:
                return
            count = self._store.bump("codec_errors")
            self._store.bump(f"codec_errors.{error.reason}")
        log.warning(
            "dropped a bad message on %s (%s, %d so far): %s", topic, error.reason, count, error
        )
        self._notify({"sync"})

    def session_message(self, incoming: Incoming) -> None:
        topic, envelope = incoming.topic, incoming.envelope
        device = self.config.device
        out: list[tuple[str | None, Outgoing]] = []
        changed: set[ChangeKind] = set()
        with self._lock:
            if self._closed:
                return
            remote = self._remote_stamp(envelope.hlc)
            now_ms = _ms(self._clock()) if remote is not None else 0
            now = self._now()
            store = self._store
            entries: tuple[ViewChange, ...] = ()
            head = None
            if topic == self._inbox_topic:
                if isinstance(envelope, ViewChangeMsg):  # a batch of one
                    entries, head = (envelope.body,), envelope.body.head
                elif isinstance(envelope, ViewChangesMsg):
                    entries, head = envelope.body.entries, envelope.body.head
            step = None
            if entries:
                step = receive_batch(store.receiver(), entries[0].seq, entries[-1].seq)
            stamp = None  # the clock after the remote stamp: stored with the entries, or below
            if remote is not None and (step is None or step.verdict != "apply"):
                stamp = observe(store.hlc(device), remote, now_ms)
            if step is not None:
                if step.verdict == "apply":
                    # the clock is observed in the entries' transaction, from the clock it reads
                    store.apply_changes(entries[step.skip:], at=now,
                                        remote=remote, node=device, now_ms=now_ms)
                    if step.skip:  # the leading entries were applied before
                        store.bump("duplicates", step.skip)
                    self._applied_dirty = True
                    self._last_progress = self._clock()
                    # the gateway's head says whether more is due: a dropped tail shows up here
                    self._behind = head is not None and head > entries[-1].seq
                    if self._behind:
                        # mid-burst: observers hear of it once, with the burst's last entry (or
                        # from the ticker within TICK_S when the tail never comes)
                        self._unnotified |= {"route", "conflicts", "sync"}
                    else:
                        changed |= {"route", "conflicts", "sync"}
                elif step.verdict == "duplicate":
                    store.bump("duplicates", len(entries))
                else:
                    # as one by one: each entry past the gap counts, the first asks (once)
                    store.bump("gaps", len(entries))
                    self._behind = True
                    if step.request_after is not None:
                        store.save_receiver(step.receiver)
                        self._last_progress = self._clock()
                        out.append((None, self._resync(step.request_after)))
            elif isinstance(envelope, SnapshotMsg) and topic == self._inbox_topic:
                views = self._snapshot_views(envelope.body)
                self._last_progress = self._clock()
                if views is None:  # a part of a larger snapshot: replaced once all are here
                    self._behind = True  # a part lost on the way shows as no progress
                else:
                    receiver = snapshot(store.receiver(), envelope.body.seq)
                    store.apply_snapshot(receiver.last, views, at=now)
                    self._behind = False
                    self._report_applied_at_once()  # even if the seq went back
                    changed |= {"route", "conflicts", "sync"}
            elif isinstance(envelope, AckMsg) and topic == self._acks_topic:
                store.ack(envelope.body.event_ids)
                if self._replay:  # each ack makes room for as many more of the replay
                    acked = set(envelope.body.event_ids)
                    self._replay = [r for r in self._replay if r[0] not in acked]
                    out += self._next_replay(len(acked))
                if envelope.body.delayed:  # over the device's rate: kept, acked when handled
                    store.bump("delayed_events", len(envelope.body.delayed))
                store.touch_sync(at=now)
                changed |= {"route", "sync"}
            elif (
                isinstance(envelope, StatusMsg)
                and topic == self._topics.gateway_status
                and envelope.body.role == "gateway"
            ):
                before = store.gateway_status()
                store.save_gateway_status(envelope.body, at=now)
                changed.add("sync")
                if (self._follow and envelope.body.online and before is not None
                        and not before.online):
                    # the gateway is back: entries it held for us when it stopped are in its
                    # changelog but were never sent, and no later entry may come to show it
                    out.append((None, self._ask_again()))
            else:
                store.bump("unexpected")
                log.warning("ignored a %s message on %s", envelope.kind, topic)
            if stamp is not None:
                store.observe_stamp(stamp)
        self._send(out)
        self._nudge()
        if changed:
            self._notify(changed)

    # -- internals ---------------------------------------------------------------------------

    def _snapshot_views(self, body: Snapshot) -> tuple[OrderView, ...] | None:
        """The whole route of a snapshot, once every part of it is here (None until then).
        Parts of an older snapshot are dropped when one with another ``seq`` begins."""
        if body.parts == 1:
            self._snapshot_parts.clear()
            return body.views
        if self._snapshot_parts and self._snapshot_seq != (body.seq, body.parts):
            self._snapshot_parts.clear()
        self._snapshot_seq = (body.seq, body.parts)
        self._snapshot_parts[body.part] = body.views
        if len(self._snapshot_parts) < body.parts:
            return None
        views = tuple(v for part in sorted(self._snapshot_parts)
                      for v in self._snapshot_parts[part])
        self._snapshot_parts.clear()
        return views

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def _stamp(self) -> str:
        """A stamp for a status-like message (resync, applied, status): its clock tick is
        stored without fsync; a lost tick only repeats a stamp no one orders by."""
        return str(self._store.next_stamp(self.config.device, _ms(self._clock()), durable=False))

    @staticmethod
    def _remote_stamp(text: str) -> Hlc | None:
        """A message's HLC stamp (None for a bad one, which is not observed)."""
        try:
            return Hlc.parse(text)
        except SyncError as exc:
            log.warning("ignored a bad HLC stamp: %s", exc)
            return None

    def _envelope(self, model: type[BaseModel], kind: str, body: BaseModel) -> bytes:
        message = model(
            v=1,
            kind=kind,
            id=self._new_id(),
            origin=self.config.device,
            hlc=self._stamp(),
            body=body,
        )
        return message.model_dump_json().encode()

    def _ask_again(self) -> Outgoing:
        """Under the lock: ask for everything after the last applied ``seq``
        (``sync.streams.restart``), stored as asked, and count it as stream progress."""
        receiver = self._store.receiver()
        self._store.save_receiver(restart(receiver).receiver)
        self._last_progress = self._clock()
        return self._resync(receiver.last)

    def _report_applied_at_once(self) -> None:
        """Under the lock: the next tick reports the applied ``seq``, whatever was sent before."""
        self._applied_sent = -1
        self._applied_dirty = True
        self._applied_at = float("-inf")

    def _resync(self, after: int) -> Outgoing:
        body = Resync(after=after)
        return Outgoing(self._outbox_topic, self._envelope(ResyncMsg, "resync", body))

    def _status(self, *, online: bool) -> bytes:
        status = Status(
            role="device",
            online=online,
            at=self._now(),
            app_version=self._app_version,
            last_seq=self._store.receiver().last,
            counters=self._store.counters(),
        )
        return self._envelope(StatusMsg, "status", status)

    def _send(self, messages: Iterable[tuple[str | None, Outgoing]]) -> None:
        """Publish (never under the lock); outbox rows that went out are marked as sent."""
        transport = self._transport
        if transport is None:
            return
        sent = [eid for eid, msg in messages if transport.publish(msg) and eid is not None]
        if sent:
            with self._lock:
                if not self._closed:
                    self._store.mark_sent(sent, at=self._now())

    def _notify(self, what: Iterable[ChangeKind]) -> None:
        with self._lock:
            kinds = frozenset({*what, *self._unnotified})
            self._unnotified.clear()
            observers = list(self._observers)
        if not kinds:
            return
        change = Change(what=kinds)
        for observer in observers:
            try:
                observer(change)
            except Exception:
                log.exception("an agent observer failed on %s", sorted(change.what))

    def wait_for(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``condition()`` holds, re-checked after every change; False on timeout."""
        ready = threading.Event()

        def check(_change: Any = None) -> None:
            if condition():
                ready.set()

        unsubscribe = self.subscribe(check)
        try:
            deadline = time.monotonic() + timeout
            check()
            while not ready.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                ready.wait(min(left, 0.1))  # online/offline also changes without a Change
                check()
            return True
        finally:
            unsubscribe()

    def _nudge(self) -> None:
        """After a message: wake a ticker that sleeps long if the message made work due sooner
        than it looks again: a gap or observers to tell (due within TICK_S), an ``Applied``
        due before its wake-up (none was pending, or the seq is to be reported at once). Read
        without the lock: the ticker says it is idle, and until when, BEFORE it looks at the
        state, and this looks AFTER the state was written, so one of the two always sees the
        other (at worst the ticker wakes once for nothing)."""
        if self._ticker_idle and (self._behind or self._unnotified or (
                self._applied_dirty
                and self._applied_at + APPLIED_EVERY_S < self._ticker_until)):
            self._wake.set()

    def _tick_loop(self) -> None:
        """Sleep until the next thing is due, then ``_tick``. A gap or observers not yet told
        are looked at every TICK_S; an ``Applied`` to send when it is due (APPLIED_EVERY_S
        after the last), not polled for: a tablet taking a message every half second wakes
        for the report once in two seconds, not eight times."""
        while not self._stopping.is_set():
            self._ticker_idle = True
            self._ticker_until = float("inf")  # until it knows: any nudge wakes it
            transport = self._transport
            online = self._follow and transport is not None and transport.connected
            quiet_s = self.config.sync.resync_quiet_s
            now = self._clock()
            due = self._last_progress + quiet_s  # the quiet resync
            if self._applied_dirty:
                due = min(due, self._applied_at + APPLIED_EVERY_S)
            if self._unnotified or (online and (self._behind or due - now <= TICK_S)):
                self._ticker_idle = False
                # due within TICK_S, not at once: a burst's next messages join this tick
                if self._stopping.wait(TICK_S):
                    break
            else:
                # online: nothing due before ``due``; offline (for a shift, maybe): nothing to
                # do until it connects (a nudge)
                timeout = min(quiet_s, due - now, HANDOVER_POLL_S) if online else 60.0
                self._ticker_until = now + timeout
                nudged = self._wake.wait(timeout)
                self._wake.clear()
                self._ticker_idle = False
                if nudged:  # a message made work due sooner (or stop): look again, or stop
                    continue
            try:
                if self._unnotified:
                    self._notify(())
                self._tick()
            except Exception:
                log.exception("agent ticker failed")

    def _tick(self) -> None:
        """Report the last applied seq; ask for more after ``resync_quiet_s`` without progress,
        or after ``GAP_RETRY_S`` when a gap showed the stream went on without us."""
        transport = self._transport
        if transport is None or not transport.connected or not self._follow:
            return
        with self._lock:  # actions ``agent act`` recorded in another process: send them
            handed = ([] if self._closed or not self._store.changed_elsewhere()
                      else self._store.unsent_payloads())
        if handed:
            self._send([(eid, Outgoing(self._outbox_topic, p)) for eid, p in handed])
        quiet = self._clock() - self._last_progress
        retry = min(GAP_RETRY_S, self.config.sync.resync_quiet_s)
        if (not self._applied_dirty and quiet < self.config.sync.resync_quiet_s
                and not (self._behind and quiet >= retry)):
            return  # nothing can be due: an idle tablet costs no store read per tick
        out: list[tuple[str | None, Outgoing]] = []
        with self._lock:
            if self._closed:
                return
            quiet = self._clock() - self._last_progress
            if quiet >= self.config.sync.resync_quiet_s or (self._behind and quiet >= retry):
                self._behind = False
                out.append((None, self._ask_again()))
            receiver = self._store.receiver()
            now = self._clock()
            if receiver.last != self._applied_sent and now - self._applied_at >= APPLIED_EVERY_S:
                self._applied_sent = receiver.last
                self._applied_at = now
                body = Applied(seq=receiver.last)
                out.append(
                    (
                        None,
                        Outgoing(self._outbox_topic, self._envelope(AppliedMsg, "applied", body)),
                    )
                )
            self._applied_dirty = receiver.last != self._applied_sent
        self._send(out)


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _based_on(
    view: OrderView, action: str, field: str | None, choose: str | None
) -> tuple[tuple[str, ...], str | None]:
    """The claim ids the driver saw, and (for ``resolve``) the chosen claim id."""
    if action != "resolve":
        if field is not None or choose is not None:
            raise ActionError(f"order {view.order_id}: field and choose are only for resolve")
        ids = [c.claim_id for name in sorted(view.fields) for c in view.fields[name].candidates]
        return tuple(dict.fromkeys(ids)), None
    if field is None or choose is None:
        raise ActionError(f"order {view.order_id}: resolve needs a field and a choice")
    fv = view.fields.get(field)
    if fv is None or fv.state != "conflict":
        raise ActionError(f"order {view.order_id}: field {field} is not in conflict")
    for candidate in fv.candidates:
        if choose in (candidate.claim_id, candidate.source):
            return tuple(c.claim_id for c in fv.candidates), candidate.claim_id
    sides = ", ".join(f"{c.source} ({c.claim_id})" for c in fv.candidates)
    raise ActionError(f"order {view.order_id}: {field}: choose one of {sides}")


def _stop(view: OrderView, local: tuple[LocalAction, ...]) -> RouteStop:
    shown: str | None = None
    for action in reversed(local):
        if action.action in ACTION_STATUS:
            shown = f"{ACTION_STATUS[action.action]} ({'sent' if action.acked else 'pending'})"
            break
    if shown is None:
        status = view.fields.get("status")
        if status is not None and status.state == "conflict":
            shown = "conflict"
        elif status is not None and status.state != "withdrawn" and status.value is not None:
            shown = str(status.value)
    return RouteStop(
        order_id=view.order_id,
        view=view,
        local=local,
        status_shown=shown,
        hold=view.hold,
        warnings=view.warnings,
        conflicts=view.conflicts(),
    )


def _route_key(stop: RouteStop) -> tuple[int, str]:
    """Route order: the assignment's ``sequence`` when sources agree on it, then order id."""
    assignment = stop.view.value("assignment")
    sequence = assignment.get("sequence") if isinstance(assignment, dict) else None
    if isinstance(sequence, int) and not isinstance(sequence, bool):
        return sequence, stop.order_id
    return 1 << 30, stop.order_id
