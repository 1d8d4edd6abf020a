"""The tablet's stream protocol engine: the I/O around ``sync.streams`` and ``sync.follow``.

(About 430 lines, one idea: what each inbound message does to the store and what goes back;
what stands apart -- the ticker thread, snapshot parts, the pure timing -- lives apart.)

``Engine`` owns the store, the session and the agent's lock; ``agent.service.Agent`` (the API
the UI calls) holds one and hands it the session's calls.

* the inbox stream comes as ``view_change`` (one entry) or ``view_changes`` (consecutive
  entries; a single entry is handled as a batch of one, on the same path) and is judged by
  ``sync.streams.receive_batch``: entries from ``last + 1`` on are applied in ONE transaction
  with the last one's ``seq`` (``Store.apply_changes``), duplicates are counted (each entry)
  and dropped, a gap sends ``Resync(after=last)`` once; a snapshot replaces the views;
* WHEN to ask again (every (re)connect, ``resync_quiet_s`` without progress, a gap with no
  progress for ``gap_retry_s``) and when to report ``Applied`` (only when the seq moved, at
  most every ``applied_every_s``, the first one after a connect at once) is
  ``sync.follow``'s pure state machine; this module keeps its state and ``agent.ticker`` runs
  the ticker thread; a snapshot sent in parts is put together by ``agent.snapshots``;
* the stamp of an ``Applied`` (as of any status-like message) is stored without fsync
  (``synchronous=NORMAL``) -- only a driver action's is FULL;
* the outbox is resent on every reconnect, ``REPLAY_WINDOW`` rows at a time, more as acks
  come back; an ack's ``delayed`` (events the gateway holds over the device's rate) is counted;
* ``agent act`` cannot connect beside a running ``agent run`` (the broker gives a device one
  connection, ``use_username_as_clientid``): the running engine's ticker looks for outbox rows
  another process wrote (``Store.changed_elsewhere``: one ``PRAGMA data_version``) at least
  every ``Timing.idle_max_s`` while online, and sends them.

Thread model: ONE re-entrant lock guards the store and the engine's state. Paho's network
thread (session callbacks), the ticker thread (quiet resync, ``Applied``) and the caller's
thread (UI, CLI) all take it for their store work. Nothing is published and no observer is
called while holding it: each step collects its outgoing messages and its changes under the
lock, then publishes and notifies after releasing it, so a slow observer or paho's own locks
can never deadlock against the store. Observers run on whichever thread made the change and
must hand UI work to their own thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from pydantic import BaseModel

from agent.config import AgentConfig
from agent.model import Change, ChangeKind
from agent.session import Incoming, Outgoing, SessionSettings, Transport
from agent.snapshots import SnapshotParts
from agent.store import Store
from agent.ticker import Ticker
from sync import follow
from sync.envelope import (
    AckMsg,
    Applied,
    AppliedMsg,
    Resync,
    ResyncMsg,
    SnapshotMsg,
    Status,
    StatusMsg,
    ViewChange,
    ViewChangeMsg,
    ViewChangesMsg,
)
from sync.errors import CodecError, SyncError
from sync.hlc import Hlc, observe
from sync.streams import receive_batch, restart, snapshot
from sync.topics import Topics

log = logging.getLogger(__name__)

Observer = Callable[[Change], None]
Outgoings = list[tuple[str | None, Outgoing]]
"""Messages to publish: (outbox event id or None, message)."""


REPLAY_WINDOW = 100
"""Outbox rows resent at once on a reconnect; each ack lets as many more go. A tablet back
from days offline with thousands of actions does not send them all in one burst (the gateway
would hold most of them over its event rate, ``gateway.streams.limits``)."""


def ms(seconds: float) -> int:
    return int(seconds * 1000)


class Engine:
    """The store, the session and the stream state of one tablet."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        clock: Callable[[], float],
        new_id: Callable[[], str],
        app_version: str,
        timing: follow.Timing,
    ) -> None:
        self.config = config
        self.clock = clock
        self.new_id = new_id
        self.app_version = app_version
        self.timing = timing
        self.topics = Topics(config.depot)
        # checked and built once (every message is matched against them)
        self.inbox_topic = self.topics.inbox(config.device)
        self.acks_topic = self.topics.acks(config.device)
        self.outbox_topic = self.topics.outbox(config.device)
        self.store = Store.open(config.db)
        self.lock = threading.RLock()
        self.observers: list[Observer] = []
        self.transport: Transport | None = None
        self.following = True
        self.closed = False
        self.state = follow.start(clock())
        self._ticker = Ticker(self)
        self._unnotified: set[ChangeKind] = set()  # changes of a burst not yet told observers
        self._snapshots = SnapshotParts()
        self._replay: list[tuple[str, bytes]] = []  # outbox rows still to resend since connect

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, make_transport: Callable[[SessionSettings], Transport], *,
              follow_stream: bool, client_id: str) -> None:
        """Build the session (see ``Agent.start``) and start it and the ticker."""
        device = self.config.device
        self.following = follow_stream
        if follow_stream:
            subscriptions: tuple[str, ...] = (
                self.inbox_topic, self.acks_topic, self.topics.gateway_status,
            )
            with self.lock:
                offline = self.status_bytes(online=False)
            will = Outgoing(self.topics.device_status(device), offline, retain=True)
        else:
            subscriptions = (self.acks_topic,)
            will = None
        b, s = self.config.broker, self.config.sync
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
        self.transport = make_transport(settings)
        self.transport.start()
        self._ticker.start()

    def stop(self) -> None:
        """Say "offline" (retained), disconnect, and close the store."""
        self._ticker.stop()
        transport = self.transport
        if transport is not None:
            final = None
            if self.following:
                with self.lock:
                    status = self.status_bytes(online=False)
                final = Outgoing(self.topics.device_status(self.config.device), status, True)
            transport.stop(final=final)
            if self.following:  # presence belongs to the session that follows the stream
                with self.lock:
                    self.store.set_presence(False, at=self.now())
        with self.lock:
            self.closed = True
            self.store.close()

    @property
    def online(self) -> bool:
        return self.transport is not None and self.transport.connected

    # -- the session's calls (paho's network thread) -------------------------------------------

    def session_online(self) -> None:
        out: Outgoings = []
        with self.lock:
            if self.closed:
                return
            if self.following:
                self.store.set_presence(True, at=self.now())
                self.state, _due = follow.connected(self.state, self.clock())
                out.append((None, self._ask_again()))
                status = self.status_bytes(online=True)
                out.append(
                    (None, Outgoing(self.topics.device_status(self.config.device), status, True))
                )
            # the outbox, oldest first, REPLAY_WINDOW at a time: the rest as acks come back
            self._replay = self.store.pending_payloads()
            out += self._next_replay(REPLAY_WINDOW)
        self.send(out)
        self._ticker.nudge()
        self.notify({"sync"})

    def _next_replay(self, n: int) -> Outgoings:
        """The next ``n`` outbox rows of the replay begun at the last connect (under the
        lock)."""
        batch, self._replay = self._replay[:n], self._replay[n:]
        return [(event_id, Outgoing(self.outbox_topic, payload)) for event_id, payload in batch]

    def session_offline(self, reason: str) -> None:
        log.info("offline: %s", reason)
        with self.lock:
            if self.closed or not self.following:
                return
            self.store.set_presence(False, at=self.now())
        self.notify({"sync"})

    def session_bad_message(self, topic: str, error: CodecError) -> None:
        with self.lock:
            if self.closed:
                return
            count = self.store.bump("codec_errors")
            self.store.bump(f"codec_errors.{error.reason}")
        log.warning(
            "dropped a bad message on %s (%s, %d so far): %s", topic, error.reason, count, error
        )
        self.notify({"sync"})

    def session_message(self, incoming: Incoming) -> None:
        topic, envelope = incoming.topic, incoming.envelope
        device = self.config.device
        out: Outgoings = []
        changed: set[ChangeKind] = set()
        with self.lock:
            if self.closed:
                return
            remote = _remote_stamp(envelope.hlc)
            now_ms = ms(self.clock()) if remote is not None else 0
            now = self.now()
            store = self.store
            entries: tuple[ViewChange, ...] = ()
            head = None
            if topic == self.inbox_topic:
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
                    self.state = follow.applied(self.state, self.clock(), entries[-1].seq, head)
                    if self.state.behind:
                        # mid-burst: observers hear of it once, with the burst's last entry (or
                        # from the ticker within tick_s when the tail never comes)
                        self._unnotified |= {"route", "conflicts", "sync"}
                    else:
                        changed |= {"route", "conflicts", "sync"}
                elif step.verdict == "duplicate":
                    store.bump("duplicates", len(entries))
                else:
                    # as one by one: each entry past the gap counts, the first asks (once)
                    store.bump("gaps", len(entries))
                    asks = step.request_after is not None
                    if step.request_after is not None:
                        store.save_receiver(step.receiver)
                        out.append((None, self._resync(step.request_after)))
                    self.state = follow.gap(self.state, self.clock(), asked_now=asks)
            elif isinstance(envelope, SnapshotMsg) and topic == self.inbox_topic:
                views = self._snapshots.add(envelope.body)
                if views is None:  # a part of a larger snapshot: replaced once all are here
                    self.state = follow.snapshot_part(self.state, self.clock())
                else:
                    receiver = snapshot(store.receiver(), envelope.body.seq)
                    store.apply_snapshot(receiver.last, views, at=now)
                    self.state = follow.snapshot_applied(self.state, self.clock())
                    changed |= {"route", "conflicts", "sync"}
            elif isinstance(envelope, AckMsg) and topic == self.acks_topic:
                body = envelope.body
                if body.event_ids:
                    store.ack(body.event_ids)
                if body.refused:  # kept, with the reason, until the driver dismisses
                    store.refuse(((r.event_id, r.reason) for r in body.refused), at=now)
                if self._replay:  # each ack or refusal makes room for as many more of the replay
                    answered = set(body.event_ids) | {r.event_id for r in body.refused}
                    self._replay = [r for r in self._replay if r[0] not in answered]
                    out += self._next_replay(len(answered))
                if body.delayed:  # over the device's rate: kept, acked when handled
                    store.bump("delayed_events", len(body.delayed))
                store.touch_sync(at=now)
                changed |= {"route", "sync"}
            elif (
                isinstance(envelope, StatusMsg)
                and topic == self.topics.gateway_status
                and envelope.body.role == "gateway"
            ):
                before = store.gateway_status()
                store.save_gateway_status(envelope.body, at=now)
                changed.add("sync")
                if (self.following and envelope.body.online and before is not None
                        and not before.online):
                    # the gateway is back: entries it held for us when it stopped are in its
                    # changelog but were never sent, and no later entry may come to show it
                    out.append((None, self._ask_again()))
                    self.state = follow.asked(self.state, self.clock())
            else:
                store.bump("unexpected")
                log.warning("ignored a %s message on %s", envelope.kind, topic)
            if stamp is not None:
                store.observe_stamp(stamp)
        self.send(out)
        self._ticker.nudge()
        if changed:
            self.notify(changed)

    # -- sending and telling -------------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def send(self, messages: Iterable[tuple[str | None, Outgoing]]) -> None:
        """Publish (never under the lock); outbox rows that went out are marked as sent."""
        transport = self.transport
        if transport is None:
            return
        sent = [eid for eid, msg in messages if transport.publish(msg) and eid is not None]
        if sent:
            with self.lock:
                if not self.closed:
                    self.store.mark_sent(sent, at=self.now())

    def notify(self, what: Iterable[ChangeKind]) -> None:
        with self.lock:
            kinds = frozenset({*what, *self._unnotified})
            self._unnotified.clear()
            observers = list(self.observers)
        if not kinds:
            return
        change = Change(what=kinds)
        for observer in observers:
            try:
                observer(change)
            except Exception:
                log.exception("an agent observer failed on %s", sorted(change.what))

    def unnotified(self) -> bool:
        """Changes of a burst not yet told observers (the ticker tells them within tick_s)."""
        return bool(self._unnotified)

    def status_bytes(self, *, online: bool) -> bytes:
        """Under the lock: this device's status envelope."""
        status = Status(
            role="device",
            online=online,
            at=self.now(),
            app_version=self.app_version,
            last_seq=self.store.receiver().last,
            counters=self.store.counters(),
        )
        return self._envelope(StatusMsg, "status", status)

    # -- internals ---------------------------------------------------------------------------

    def _stamp(self) -> str:
        """A stamp for a status-like message (resync, applied, status): its clock tick is
        stored without fsync; a lost tick only repeats a stamp no one orders by."""
        return str(self.store.next_stamp(self.config.device, ms(self.clock()), durable=False))

    def _envelope(self, model: type[BaseModel], kind: str, body: BaseModel) -> bytes:
        message = model(
            v=1,
            kind=kind,
            id=self.new_id(),
            origin=self.config.device,
            hlc=self._stamp(),
            body=body,
        )
        return message.model_dump_json().encode()

    def _ask_again(self) -> Outgoing:
        """Under the lock: ask for everything after the last applied ``seq``
        (``sync.streams.restart``), stored as asked."""
        receiver = self.store.receiver()
        self.store.save_receiver(restart(receiver).receiver)
        return self._resync(receiver.last)

    def _resync(self, after: int) -> Outgoing:
        body = Resync(after=after)
        return Outgoing(self.outbox_topic, self._envelope(ResyncMsg, "resync", body))

    def tick(self) -> None:
        """Send the actions another process recorded (``agent act``), then what
        ``sync.follow.tick`` says is due (online and following only)."""
        if not self.online or not self.following:
            return
        with self.lock:  # one PRAGMA data_version when nothing was handed over
            handed = ([] if self.closed or not self.store.changed_elsewhere()
                      else self.store.unsent_payloads())
        if handed:
            self.send([(eid, Outgoing(self.outbox_topic, p)) for eid, p in handed])
        if not follow.may_be_due(self.state, self.timing, self.clock()):
            return  # nothing can be due: an idle tablet costs no store read per tick
        out: Outgoings = []
        with self.lock:
            if self.closed:
                return
            self.state, due = follow.tick(self.state, self.timing, self.clock(),
                                          self.store.receiver().last)
            if due.resync:
                out.append((None, self._ask_again()))
            if due.applied is not None:
                body = Applied(seq=due.applied)
                out.append((None, Outgoing(
                    self.outbox_topic, self._envelope(AppliedMsg, "applied", body))))
        self.send(out)


def _remote_stamp(text: str) -> Hlc | None:
    """A message's HLC stamp (None for a bad one, which is not observed)."""
    try:
        return Hlc.parse(text)
    except SyncError as exc:
        log.warning("ignored a bad HLC stamp: %s", exc)
        return None
