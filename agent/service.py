"""The tablet agent: the API the UI calls and ``crossdock agent run`` runs.

``Agent`` is what a screen or the CLI holds: the route with the driver's own actions overlaid,
the conflicts, the outbox, the sync status, observers, and driver actions (recorded, local
overlay + outbox row, in one transaction, then published if online; the outbox is resent on
every reconnect, ``REPLAY_WINDOW`` at a time, until each event is acked). The stream protocol
behind it -- the inbox stream, gap repair, acks, the ticker and its timing -- is
``agent.engine`` over the pure ``sync.streams`` and ``sync.follow``; ``Agent`` hands it the
session's calls (it is the session's handler). What a screen reads and what a tap becomes
are pure and apart: ``agent.route`` (the overlay) and ``agent.actions`` (the event).

The broker makes a connection's client id its username (``use_username_as_clientid``), so a
device has ONE MQTT session: ``agent run`` (``start()``) holds ``<db>.run.lock`` while it runs,
and ``agent act`` (``start(follow_stream=False)``) does not connect while another process holds
it (it would replace that agent's connection; ``handed_over``): the running agent looks for
outbox rows written by another process every ``HANDOVER_POLL_S`` (``PRAGMA data_version``, no
disk read) and sends them; ``act`` waits for their ack in the store.

Thread model: see ``agent.engine``; every method here takes the engine's lock for its store
work and never publishes or notifies while holding it.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from agent.actions import ACTIONS, DriverEventFields, based_on_of, check_action, event_message
from agent.config import AgentConfig
from agent.engine import REPLAY_WINDOW, Engine, Observer, ms
from agent.errors import ActionError
from agent.model import (
    ChangeKind,
    OutboxItem,
    RefusedAction,
    RouteStop,
    SyncStatus,
    age,
)
from agent.route import route_stops
from agent.session import Incoming, MqttSession, Outgoing, SessionSettings, Transport
from sync.codec import encode
from sync.errors import CodecError
from sync.follow import Timing
from sync.host.lock import try_flock
from sync.host.version import package_version
from sync.model import Conflict
from sync.topics import Topics

__all__ = ["ACTIONS", "APPLIED_EVERY_S", "GAP_RETRY_S", "HANDOVER_POLL_S", "REPLAY_WINDOW",
           "TICK_S", "Agent", "Observer", "TransportMaker"]

TICK_S = 0.25
"""How often the ticker looks while a gap or observers not yet told are pending, and the
soonest it does anything after a message. Otherwise it sleeps until the next thing is due (an
``Applied``, the quiet resync), or until a message makes something due sooner: an idle
tablet, or one of 200 on a depot's box, does not wake four times a second for nothing."""

APPLIED_EVERY_S = 2.0
"""How often, at most, the agent reports its last applied ``seq``; the last one of a burst goes
within this long (see ``sync.follow.Timing.applied_every_s``)."""

HANDOVER_POLL_S = 2.0
"""How often an online ``agent run`` checks whether another process (``agent act``) wrote to
its store (one ``PRAGMA data_version``: the WAL index in shared memory, no disk read), and
sends the actions it finds (``sync.follow.Timing.idle_max_s``): an idle online tablet wakes
this often (it slept until its quiet resync before), which ``agent act --wait``'s default of
5 s allows for. ``agent act`` cannot connect beside it: the broker gives a device one
connection (``use_username_as_clientid``)."""

GAP_RETRY_S = 2.0
"""After a gap, a stream quiet for this long (capped by ``resync_quiet_s``) may mean the resync
request or part of its replay was lost (a broker restart before the gateway re-subscribed, a
broker queue that dropped the replay's tail): ask again rather than wait out the quiet timeout.
If nothing was lost the gateway answers "up to date" by sending nothing."""

TransportMaker = Callable[[SessionSettings, "Agent"], Transport]


def _new_id() -> str:
    return uuid.uuid4().hex


def _mqtt(settings: SessionSettings, agent: Agent) -> Transport:
    return MqttSession(settings, agent)


class Agent:
    """One tablet's agent. Usable without ``start()`` (offline: route, act, state).

    ``timing`` overrides the stream timing (``sync.follow.Timing``; its ``quiet_s`` is the
    config's ``resync_quiet_s`` by default)."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = _new_id,
        transport: TransportMaker = _mqtt,
        app_version: str | None = None,
        timing: Timing | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._new_id = new_id
        self._make_transport = transport
        if timing is None:
            timing = Timing(quiet_s=config.sync.resync_quiet_s, gap_retry_s=GAP_RETRY_S,
                            applied_every_s=APPLIED_EVERY_S, tick_s=TICK_S,
                            idle_max_s=HANDOVER_POLL_S)
        self._engine = engine = Engine(
            config, clock=clock, new_id=new_id, timing=timing,
            app_version=app_version if app_version is not None else package_version())
        # the engine's, under the names the API's methods use
        self._store = engine.store
        self._lock = engine.lock
        self._topics = engine.topics
        self._outbox_topic = engine.outbox_topic
        self._run_lock: int | None = None  # fd holding <db>.run.lock while this agent runs
        self.handed_over = False
        """True when ``start(follow_stream=False)`` found an ``agent run`` holding the device:
        nothing was connected; that agent sends the outbox."""

    @property
    def topics(self) -> Topics:
        """The depot's topics (``topics.inbox(config.device)`` is this tablet's stream)."""
        return self._topics

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, *, follow_stream: bool = True) -> None:
        """Connect (in the background; offline is fine) and keep syncing until ``stop()``.

        ``follow_stream=False`` is the one-shot mode of ``agent act``: a separate, clean MQTT
        session that only sends the outbox and takes acks, so it never competes with a running
        ``agent run`` for the device's persistent session or its stream.
        """
        if self._engine.transport is not None:
            return
        lock = try_flock(self.config.db.with_name(self.config.db.name + ".run.lock"))
        if follow_stream:
            self._run_lock = lock
        elif lock is None:
            self.handed_over = True  # an agent run holds the device's one session
            return
        else:
            os.close(lock)
        # the broker takes the username as the client id (use_username_as_clientid); sending
        # it makes the broker's log and session names the ones the client used
        username = self.config.broker.username
        client_id = username or f"crossdock-{self.config.device}"
        if not follow_stream and not username:  # an anonymous broker keeps client ids as they are
            client_id = f"crossdock-{self.config.device}-act-{self._new_id()[:8]}"
        self._engine.start(lambda settings: self._make_transport(settings, self),
                           follow_stream=follow_stream, client_id=client_id)

    def stop(self) -> None:
        """Say "offline" (retained), disconnect, and close the store. Safe to call twice."""
        if not self._engine.closed:
            self._engine.stop()
        if self._run_lock is not None:
            os.close(self._run_lock)
            self._run_lock = None

    close = stop

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- SessionHandler (paho's network thread): the engine's ------------------------------------

    def session_online(self) -> None:
        self._engine.session_online()

    def session_offline(self, reason: str) -> None:
        self._engine.session_offline(reason)

    def session_bad_message(self, topic: str, error: CodecError) -> None:
        self._engine.session_bad_message(topic, error)

    def session_message(self, incoming: Incoming) -> None:
        self._engine.session_message(incoming)


    # -- the API the UI calls ----------------------------------------------------------------

    def route(self) -> list[RouteStop]:
        """The order views with the driver's not-yet-reflected actions overlaid, in route order."""
        with self._lock:
            views = self._store.views()
            actions = self._store.local_actions()
        return route_stops(views, actions)

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
            transport = self._engine.transport
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
            self._engine.observers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._engine.observers:
                    self._engine.observers.remove(callback)

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
        check_action(action)
        with self._lock:
            view = self._store.view(order_id)
            if view is None:
                last = self._store.receiver().last
                raise ActionError(
                    f"order {order_id} is not on this tablet's route (synced to seq {last}); "
                    "check the order id or wait for the route to sync"
                )
            based_on, choose_id = based_on_of(view, action, field, choose)
            now = self._now()
            event_id = self._new_id()
            stamp = self._store.next_stamp(self.config.device, ms(self._clock()))
            message = event_message(
                DriverEventFields(event_id=event_id, order_id=order_id, action=action, at=now,
                                  reason=reason, note=note, based_on=based_on, field=field,
                                  choose=choose_id),
                device=self.config.device, stamp=stamp)
            self._store.record_action(message, created_at=now)
        self._send([(event_id, Outgoing(self._outbox_topic, encode(message)))])
        self._notify({"route", "sync"})
        return event_id

    def refused(self, *, dismissed: bool = False) -> list[RefusedAction]:
        """Actions the gateway turned down, with its reasons, oldest first: those the driver
        has not dismissed (``dismissed=True``: every one, dismissed ones with when)."""
        with self._lock:
            return self._store.refused(dismissed=dismissed)

    def dismiss(self, event_id: str) -> str:
        """The driver saw refused action ``event_id`` and its reason: record that (the action
        stays in the store, marked dismissed) and tell the gateway with a ``dismiss`` event,
        sent and acked like any action. Returns the dismissal's event id."""
        with self._lock:
            refused = {r.event_id: r for r in self._store.refused()}
            target = refused.get(event_id)
            if target is None:
                raise ActionError(
                    f"no refused action {event_id} to dismiss on this tablet; "
                    "`crossdock agent state --json` lists them (refused)")
            now = self._now()
            dismissal_id = self._new_id()
            stamp = self._store.next_stamp(self.config.device, ms(self._clock()))
            message = event_message(
                DriverEventFields(event_id=dismissal_id, order_id=target.order_id,
                                  action="dismiss", at=now, dismisses=event_id),
                device=self.config.device, stamp=stamp)
            self._store.dismiss(event_id, message, at=now)
        self._send([(dismissal_id, Outgoing(self._outbox_topic, encode(message)))])
        self._notify({"route", "sync"})
        return dismissal_id

    def applied_seq(self) -> int:
        """The last stream ``seq`` applied (committed) in this tablet's store."""
        with self._lock:
            return self._store.receiver().last

    def wait_online(self, timeout: float) -> bool:
        """Wait until the session is online; False after ``timeout`` seconds."""
        return self.wait_for(
            lambda: self._engine.online, timeout
        )

    def wait_acked(self, event_id: str, timeout: float) -> bool:
        """Wait until the gateway acked ``event_id``; False after ``timeout`` seconds."""

        def acked() -> bool:
            with self._lock:
                return all(item.event_id != event_id for item in self._store.pending())

        return self.wait_for(acked, timeout)

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

    # -- for the API's methods ---------------------------------------------------------------

    def _now(self) -> datetime:
        return self._engine.now()

    def _send(self, messages: Iterable[tuple[str | None, Outgoing]]) -> None:
        self._engine.send(messages)

    def _notify(self, what: Iterable[ChangeKind]) -> None:
        self._engine.notify(what)
