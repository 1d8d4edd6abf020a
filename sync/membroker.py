"""An in-memory MQTT broker core, for running a whole depot in one process (scenario tests).

Not a product transport: the depot's broker is Mosquitto. This is its behaviour as crossdock
relies on it, as a pure state machine like ``sync.streams``: no threads, no sockets, no wall
clock (``now`` is passed in), randomness only from a seeded ``random.Random`` handed in. The
shells that give it threads and plug it into the agent's ``Transport`` and the gateway's link
live in ``tests/memnet.py``; a shell calls these methods under one lock.

What it does, as Mosquitto does it:

* topic filters with ``+`` and ``#`` (``matches``); QoS 1 only (every crossdock message is);
* sessions: ``clean_start`` or a kept session (its subscriptions and queued messages), removed
  ``session_expiry_s`` after its disconnect (``expire(now)``); a second connect under a client
  id takes the session over and drops the first connection (its will is published);
* QoS 1: a delivery stays in flight until ``ack``; the in-flight ones of a connection that goes
  away are sent again (``dup``) when the session reconnects; at most ``max_inflight`` are in
  flight and ``max_queued`` wait behind them; past that a message is dropped (counted), even
  for an online client, as Mosquitto's ``max_queued_messages`` does;
* retained messages (an empty payload clears one), sent on subscribe;
* wills, published when a connection ends without a ``disconnect(graceful=True)``;
* an optional ACL in Mosquitto's own format (``Acl.parse`` of the text ``render_acl`` writes):
  a publish it denies is dropped silently, a subscription is granted but nothing it may not read
  is delivered on it;
* ``crash()``: the broker process dies. Sessions, subscriptions and retained messages survive
  (as in Mosquitto's persistence file after a save); every queued and in-flight message is
  lost (what a SIGKILL loses since the last save), and no will is sent.

Faults for fault tests, all deterministic: ``drop_next(filter, n)`` loses the next ``n``
messages routed to subscribers on topics matching ``filter``; ``Chaos(rng, drop=, duplicate=,
reorder=)`` does it at random from a seeded ``rng``. A reordered message is held back and queued
after the next one for the same client (or when its connection ends). Everything lost or
changed is counted in ``stats``.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Literal, Protocol

Access = Literal["read", "write"]


class Rng(Protocol):
    """What the faults need of a ``random.Random`` (seeded by the caller)."""

    def random(self) -> float: ...


def matches(topic_filter: str, topic: str) -> bool:
    """Does ``topic`` match ``topic_filter`` (``+`` one level, ``#`` the rest, MQTT rules)?"""
    fparts = topic_filter.split("/")
    tparts = topic.split("/")
    if topic.startswith("$") and fparts[0] in ("+", "#"):
        return False
    for i, part in enumerate(fparts):
        if part == "#":
            return i == len(fparts) - 1
        if i >= len(tparts):
            return False
        if part != "+" and part != tparts[i]:
            return False
    return len(fparts) == len(tparts)


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool = False


@dataclass(frozen=True)
class Delivery:
    """A message handed to a connected client; ``ack(client_id, packet_id)`` when handled."""

    packet_id: int
    message: Message
    dup: bool = False


@dataclass(frozen=True)
class _Rule:
    access: frozenset[Access]
    topic_filter: str


_ACCESS: dict[str, frozenset[Access]] = {
    "read": frozenset({"read"}), "write": frozenset({"write"}),
    "readwrite": frozenset({"read", "write"}),
}


@dataclass(frozen=True)
class Acl:
    """Mosquitto ACL rules: ``user NAME`` starts a user's block, ``topic [read|write|readwrite]
    FILTER`` grants. Rules before the first ``user`` line are for anonymous clients. Anything
    not granted is denied."""

    rules: dict[str | None, tuple[_Rule, ...]]

    @classmethod
    def parse(cls, text: str) -> Acl:
        rules: dict[str | None, list[_Rule]] = {None: []}
        user: str | None = None
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            words = line.split()
            if words[0] == "user" and len(words) == 2:
                user = words[1]
                rules.setdefault(user, [])
            elif words[0] == "topic" and len(words) in (2, 3):
                kind = words[1] if len(words) == 3 else "readwrite"
                access = _ACCESS.get(kind, frozenset())
                if not access:
                    raise ValueError(f"acl line {number}: unknown access {kind!r}")
                rules[user].append(_Rule(access, words[-1]))
            else:
                raise ValueError(f"acl line {number}: cannot read {line!r}")
        return cls({k: tuple(v) for k, v in rules.items()})

    def allows(self, username: str | None, topic: str, access: Access) -> bool:
        return any(access in rule.access and matches(rule.topic_filter, topic)
                   for rule in self.rules.get(username, ()))


@dataclass
class Chaos:
    """Random faults from a seeded ``rng``, on messages routed to topics matching ``topics``:
    each delivery is dropped, duplicated or reordered with these probabilities."""

    rng: Rng
    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    topics: str = "#"


@dataclass
class _Drop:
    topic_filter: str
    left: int


@dataclass
class _Session:
    client_id: str
    username: str | None
    expiry_s: int
    subscriptions: dict[str, None] = field(default_factory=dict)  # filters, in order
    queue: deque[Delivery] = field(default_factory=deque)
    inflight: dict[int, Delivery] = field(default_factory=dict)
    held: Delivery | None = None  # reordered: goes behind the next one
    connection: int | None = None  # the live connection's number, None while away
    will: Message | None = None
    gone_at: float | None = None
    next_packet: int = 1


class MemBroker:
    """One broker's state. Every method is quick and returns at once; see the module doc."""

    def __init__(self, *, acl: Acl | None = None, chaos: Chaos | None = None,
                 max_inflight: int = 20, max_queued: int = 1000) -> None:
        self.acl = acl
        self.chaos = chaos
        self.max_inflight = max_inflight
        self.max_queued = max_queued
        self.retained: dict[str, Message] = {}
        self.stats: Counter[str] = Counter()
        self._sessions: dict[str, _Session] = {}
        self._connections = 0
        self._drops: list[_Drop] = []

    # --- connections ------------------------------------------------------------------------

    def connect(self, client_id: str, *, now: float, username: str | None = None,
                clean_start: bool = True, session_expiry_s: int = 0,
                will: Message | None = None) -> tuple[int, bool]:
        """A new connection: (its number, whether a session was present). A connection
        already live under this id is dropped first (its will goes out)."""
        self.expire(now)
        old = self._sessions.get(client_id)
        if old is not None and old.connection is not None:
            self._end(old, now, graceful=False)
            old = self._sessions.get(client_id)
        present = old is not None and not clean_start
        if not present:
            old = _Session(client_id, username, session_expiry_s)
            self._sessions[client_id] = old
        assert old is not None
        session = old
        session.username, session.expiry_s = username, session_expiry_s
        self._connections += 1
        session.connection = self._connections
        session.will, session.gone_at = will, None
        if session.inflight:  # sent before and never acked: again, first, marked dup
            again = [Delivery(d.packet_id, d.message, dup=True)
                     for d in session.inflight.values()]
            session.inflight.clear()
            session.queue.extendleft(reversed(again))
            self.stats["redelivered"] += len(again)
        return session.connection, present

    def connected(self, client_id: str, connection: int) -> bool:
        """Is this connection still the client's live one?"""
        session = self._sessions.get(client_id)
        return session is not None and session.connection == connection

    def disconnect(self, client_id: str, connection: int, *, now: float,
                   graceful: bool = True) -> None:
        """The connection ends: ``graceful`` (a DISCONNECT) or not (its will is published)."""
        session = self._sessions.get(client_id)
        if session is not None and session.connection == connection:
            self._end(session, now, graceful=graceful)

    def _end(self, session: _Session, now: float, *, graceful: bool) -> None:
        will, session.will = session.will, None
        session.connection, session.gone_at = None, now
        if session.held is not None:
            session.queue.append(session.held)
            session.held = None
        if session.expiry_s == 0:
            del self._sessions[session.client_id]
        if will is not None and not graceful:
            self._retain(will)
            self._route(session.client_id, session.username, will)

    def expire(self, now: float) -> None:
        """Remove the sessions whose client has been away longer than their expiry."""
        for client_id, s in list(self._sessions.items()):
            if s.connection is None and s.gone_at is not None and now - s.gone_at >= s.expiry_s:
                del self._sessions[client_id]

    def crash(self, *, now: float) -> None:
        """The broker dies: every connection is gone, every queued or in-flight message lost;
        sessions, subscriptions and retained messages are kept (see the module doc)."""
        for session in self._sessions.values():
            lost = len(session.queue) + len(session.inflight) + (session.held is not None)
            self.stats["lost_in_crash"] += lost
            session.queue.clear()
            session.inflight.clear()
            session.held = None
            if session.connection is not None:
                session.connection, session.will, session.gone_at = None, None, now

    def session_present(self, client_id: str) -> bool:
        return client_id in self._sessions

    # --- subscriptions and messages ---------------------------------------------------------

    def subscribe(self, client_id: str, topic_filter: str) -> None:
        """Add a subscription to the live session; matching retained messages are queued."""
        session = self._live(client_id)
        session.subscriptions[topic_filter] = None
        for topic, message in sorted(self.retained.items()):
            if matches(topic_filter, topic) and self._may_read(session, topic):
                self._enqueue(session, message)

    def publish(self, client_id: str, message: Message) -> bool:
        """A client publishes (the broker acknowledges it at once). False when the ACL denied
        it: it is dropped silently, as Mosquitto does."""
        session = self._live(client_id)
        if self.acl is not None and not self.acl.allows(session.username, message.topic, "write"):
            self.stats["denied_publish"] += 1
            return False
        self._retain(message)
        self._route(client_id, session.username, message)
        return True

    def _retain(self, message: Message) -> None:
        if message.retain:
            if message.payload:
                self.retained[message.topic] = message
            else:
                self.retained.pop(message.topic, None)

    def take(self, client_id: str) -> list[Delivery]:
        """The deliveries for a connected client now (they are in flight until acked)."""
        session = self._sessions.get(client_id)
        if session is None or session.connection is None:
            return []
        out = []
        while session.queue and len(session.inflight) < self.max_inflight:
            delivery = session.queue.popleft()
            session.inflight[delivery.packet_id] = delivery
            out.append(delivery)
        return out

    def ready(self, client_id: str) -> bool:
        """Would ``take`` hand this client something now?"""
        session = self._sessions.get(client_id)
        if session is None or session.connection is None:
            return False
        if len(session.inflight) >= self.max_inflight:
            return False
        return bool(session.queue)

    def ack(self, client_id: str, packet_id: int) -> None:
        session = self._sessions.get(client_id)
        if session is not None:
            session.inflight.pop(packet_id, None)

    def waiting(self, client_id: str) -> int:
        """How many messages wait for this client (queued, in flight, held)."""
        session = self._sessions.get(client_id)
        if session is None:
            return 0
        return len(session.queue) + len(session.inflight) + (session.held is not None)

    # --- faults -----------------------------------------------------------------------------

    def drop_next(self, topic_filter: str, count: int = 1) -> None:
        """Lose the next ``count`` deliveries on topics matching ``topic_filter``."""
        self._drops.append(_Drop(topic_filter, count))

    # --- internals --------------------------------------------------------------------------

    def _live(self, client_id: str) -> _Session:
        session = self._sessions.get(client_id)
        if session is None or session.connection is None:
            raise ValueError(f"client {client_id!r} is not connected")
        return session

    def _may_read(self, session: _Session, topic: str) -> bool:
        return self.acl is None or self.acl.allows(session.username, topic, "read")

    def _route(self, sender: str, username: str | None, message: Message) -> None:
        routed = Message(message.topic, message.payload, retain=False)
        for session in self._sessions.values():
            if not any(matches(f, message.topic) for f in session.subscriptions):
                continue
            if not self._may_read(session, message.topic):
                self.stats["denied_read"] += 1
                continue
            if self._fault_drop(message.topic):
                continue
            self._enqueue(session, routed)
            chaos = self.chaos
            if chaos is not None and chaos.duplicate and matches(chaos.topics, message.topic) \
                    and chaos.rng.random() < chaos.duplicate:
                self.stats["duplicated"] += 1
                self._enqueue(session, routed)

    def _fault_drop(self, topic: str) -> bool:
        for rule in self._drops:
            if rule.left > 0 and matches(rule.topic_filter, topic):
                rule.left -= 1
                self.stats["dropped_by_fault"] += 1
                return True
        chaos = self.chaos
        if chaos is not None and chaos.drop and matches(chaos.topics, topic) \
                and chaos.rng.random() < chaos.drop:
            self.stats["dropped_by_fault"] += 1
            return True
        return False

    def _enqueue(self, session: _Session, message: Message) -> None:
        # an offline client's messages wait in its queue; an online one's go in flight first
        room = self.max_queued + (0 if session.connection is None else self.max_inflight)
        if len(session.queue) + len(session.inflight) + (session.held is not None) >= room:
            self.stats["dropped_queue_full"] += 1
            return
        delivery = Delivery(session.next_packet, message)
        session.next_packet += 1
        chaos = self.chaos
        if session.held is None and chaos is not None and chaos.reorder \
                and matches(chaos.topics, message.topic) and chaos.rng.random() < chaos.reorder:
            session.held = delivery
            self.stats["reordered"] += 1
            return
        session.queue.append(delivery)
        if session.held is not None:
            session.queue.append(session.held)
            session.held = None
