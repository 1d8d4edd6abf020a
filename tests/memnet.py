"""The in-memory broker (``sync.membroker``) as a network: threads, and the two seams.

``MemNetwork`` holds one ``MemBroker`` under one lock and gives every client a thread of its own
that does what paho's network thread does: connect (again after a loss, once the broker is
up), subscribe, hand each delivery to the client's callback, then acknowledge it. The waits are
on a condition the broker's every change notifies, never on a timer, so a scenario runs as
fast as its gateway and agents do.

* ``network.transport`` is an agent ``TransportFactory`` (``Agent(config, transport=...)``);
* ``network.link`` is a gateway ``LinkMaker`` (``GatewayService(cfg, ..., link=...)``,
  ``send_command(..., link_maker=...)``). Like ``MqttLink`` over paho it keeps what is
  published while offline and sends it on reconnect;
* ``network.probe(client_id)`` is a raw client with ``MqttProbe``'s methods;
* ``network.kill()`` / ``network.restart()`` crash and restart the broker (``MemBroker.crash``);
  ``network.sever(client_id)`` ends a client's connection as its process dying would (its
  will goes out; that client object never connects or publishes again);
* ``network.cut(client_id)`` / ``network.mend(client_id)``: the client loses the network (a
  tablet out of signal) and later finds it again. Its connection ends without a DISCONNECT (its
  will goes out, its session stays), it cannot connect while cut, and it is told it is offline;
  a link keeps what it publishes meanwhile, as paho does. The broker and everyone else stay up.

The host and port in the settings are ignored: there is one broker.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from agent.session import Incoming, Outgoing, SessionHandler, SessionSettings
from gateway.streams.mqtt import LinkSettings
from sync.codec import decode
from sync.errors import CodecError
from sync.membroker import MemBroker, Message

log = logging.getLogger(__name__)

WAIT = 3.0


class _Connection:
    """One client's connection and its network thread."""

    def __init__(self, net: MemNetwork, client_id: str, *, username: str | None,
                 clean_start: bool, session_expiry_s: int, subscriptions: Sequence[str],
                 will: Message | None, on_online: Callable[[], None],
                 on_offline: Callable[[str], None], on_message: Callable[[str, bytes], None],
                 keep_offline: bool = False) -> None:
        self.net = net
        self.client_id = client_id
        self.username = username
        self.clean_start = clean_start
        self.session_expiry_s = session_expiry_s
        self.subscriptions = list(subscriptions)
        self.will = will
        self.on_online = on_online
        self.on_offline = on_offline
        self.on_message = on_message
        self.keep_offline = keep_offline  # paho's way: kept while offline, sent on reconnect
        self.buffer: list[Message] = []
        self.online = False
        self.dead = False
        self._stopping = False
        self._conn: int | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"memnet-{self.client_id}",
                                        daemon=True)
        self._thread.start()

    def _live(self) -> bool:
        return self._conn is not None and self.net.broker.connected(self.client_id, self._conn)

    def _run(self) -> None:
        net, broker, cid = self.net, self.net.broker, self.client_id
        while True:
            with net.cond:
                net.cond.wait_for(lambda: self._stopping or self.dead
                                  or (net.up and cid not in net.cut_off))
                if self._stopping or self.dead:
                    return
                self._conn, _present = broker.connect(
                    cid, now=time.monotonic(), username=self.username,
                    clean_start=self.clean_start, session_expiry_s=self.session_expiry_s,
                    will=self.will)
                for topic_filter in self.subscriptions:
                    broker.subscribe(cid, topic_filter)
                for message in self.buffer:
                    broker.publish(cid, message)
                self.buffer.clear()
                self.online = True
                net.cond.notify_all()
            self._guard("online", self.on_online)
            while True:
                with net.cond:
                    net.cond.wait_for(lambda: self._stopping or not self._live()
                                      or broker.ready(cid))
                    if self._stopping or not self._live():
                        break
                    deliveries = broker.take(cid)
                for delivery in deliveries:
                    with net.cond:
                        if not self._live():
                            break
                    message = delivery.message
                    self._guard(message.topic,
                                lambda m=message: self.on_message(m.topic, m.payload))
                    with net.cond:
                        broker.ack(cid, delivery.packet_id)
            with net.cond:
                was_online, self.online = self.online, False
                stopping = self._stopping
            if was_online and not stopping:
                self._guard("offline", lambda: self.on_offline("connection lost"))
            if stopping:
                return

    def _guard(self, where: str, call: Callable[[], None]) -> None:
        try:
            call()
        except Exception:
            log.exception("memnet client %s failed handling %s", self.client_id, where)

    def publish(self, message: Message) -> bool:
        with self.net.cond:
            if self.dead:
                return False
            if not (self.online and self._live()):
                if self.keep_offline and not self._stopping:
                    self.buffer.append(message)
                return False
            self.net.broker.publish(self.client_id, message)
            self.net.cond.notify_all()
            return True

    def subscribe(self, topic_filter: str) -> None:
        with self.net.cond:
            self.subscriptions.append(topic_filter)
            if self.online and self._live():
                self.net.broker.subscribe(self.client_id, topic_filter)
            self.net.cond.notify_all()

    def stop(self, final: Message | None = None) -> None:
        with self.net.cond:
            live = self.online and self._live() and not self.dead
            if live and final is not None:
                self.net.broker.publish(self.client_id, final)
            if live and self._conn is not None:
                self.net.broker.disconnect(self.client_id, self._conn, now=time.monotonic())
            self._stopping = True
            self.online = False
            self.net.cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)

    def lose(self) -> None:
        """The connection drops without a DISCONNECT; its thread connects again when it may.
        Call under the network's lock."""
        if self._conn is not None and self._live():
            self.net.broker.disconnect(self.client_id, self._conn, now=time.monotonic(),
                                       graceful=False)

    def sever(self) -> None:
        """The client's process died: the connection ends without a DISCONNECT."""
        with self.net.cond:
            self.dead = True
            if self._conn is not None:
                self.net.broker.disconnect(self.client_id, self._conn, now=time.monotonic(),
                                           graceful=False)
            self.online = False
            self.net.cond.notify_all()


class MemTransport:
    """An agent ``Transport`` on the in-memory broker (``agent.session.Transport``)."""

    def __init__(self, net: MemNetwork, settings: SessionSettings,
                 handler: SessionHandler) -> None:
        self._handler = handler
        will = settings.will
        self.connection = _Connection(
            net, settings.client_id, username=settings.username,
            clean_start=settings.clean_start, session_expiry_s=settings.session_expiry_s,
            subscriptions=settings.subscriptions,
            will=None if will is None else Message(will.topic, will.payload, will.retain),
            on_online=handler.session_online, on_offline=handler.session_offline,
            on_message=self._message)

    @property
    def connected(self) -> bool:
        return self.connection.online

    def start(self) -> None:
        self.connection.start()

    def publish(self, message: Outgoing) -> bool:
        return self.connection.publish(Message(message.topic, message.payload, message.retain))

    def stop(self, *, final: Outgoing | None = None) -> None:
        self.connection.stop(
            None if final is None else Message(final.topic, final.payload, final.retain))

    def _message(self, topic: str, payload: bytes) -> None:
        try:
            envelope = decode(payload)
        except CodecError as exc:
            self._handler.session_bad_message(topic, exc)
            return
        self._handler.session_message(Incoming(topic, envelope))


class MemLink:
    """A gateway link on the in-memory broker (``gateway.streams.link.Link``)."""

    def __init__(self, net: MemNetwork, settings: LinkSettings, *,
                 subscriptions: Sequence[str], on_message: Callable[[str, bytes], None],
                 on_connect: Callable[[], None] = lambda: None,
                 on_problem: Callable[[str | None], None] = lambda _problem: None,
                 will: tuple[str, bytes] | None = None,
                 log_problems: bool = True) -> None:
        self.settings = settings
        self.connected = threading.Event()
        self.problem: str | None = None  # the in-memory broker never refuses a login
        self.refused = threading.Event()
        self._on_connect = on_connect
        self.connection = _Connection(
            net, settings.client_id, username=settings.username,
            clean_start=settings.session_expiry_s == 0,
            session_expiry_s=settings.session_expiry_s, subscriptions=subscriptions,
            will=None if will is None else Message(will[0], will[1], retain=True),
            on_online=self._online, on_offline=lambda _why: self.connected.clear(),
            on_message=on_message, keep_offline=True)

    @property
    def where(self) -> str:
        return f"memory://{self.settings.client_id}"

    def _online(self) -> None:
        self.connected.set()
        self._on_connect()

    def start(self) -> None:
        self.connection.start()

    def stop(self) -> None:
        self.connection.stop()
        self.connected.clear()

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        self.connection.publish(Message(topic, payload, retain))

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)


class MemProbe:
    """A raw client with ``tests.broker.MqttProbe``'s methods; received messages queue up."""

    def __init__(self, net: MemNetwork, client_id: str) -> None:
        self.messages: queue.Queue[Message] = queue.Queue()
        self._up = threading.Event()
        self.connection = _Connection(
            net, client_id, username=None, clean_start=True, session_expiry_s=0,
            subscriptions=(), will=None, on_online=self._up.set, on_offline=lambda _w: None,
            on_message=lambda t, p: self.messages.put(Message(t, p)))
        self.connection.start()
        if not self._up.wait(WAIT):
            raise AssertionError(f"{client_id}: the in-memory broker is down")

    def subscribe(self, topic: str, qos: int = 1, timeout: float = WAIT) -> None:
        self.connection.subscribe(topic)

    def publish(self, topic: str, payload: bytes, qos: int = 1, timeout: float = WAIT) -> None:
        if not self.connection.publish(Message(topic, payload)):
            raise AssertionError(f"publish to {topic}: not connected")

    def publish_all(self, topic: str, payloads: Sequence[bytes], qos: int = 1,
                    timeout: float = WAIT) -> None:
        for payload in payloads:
            self.publish(topic, payload)

    def get(self, timeout: float = WAIT) -> Message | None:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.connection.stop()

    def __enter__(self) -> MemProbe:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class MemNetwork:
    """One in-memory broker and the clients on it (see the module doc)."""

    kind = "memory"
    host = "memory.invalid"  # what configs name; nothing connects there
    port = 1883

    def __init__(self, broker: MemBroker | None = None) -> None:
        self.broker = broker if broker is not None else MemBroker()
        self.cond = threading.Condition()
        self.up = True
        self.cut_off: set[str] = set()  # client ids that cannot reach the broker (``cut``)
        self._made: list[MemTransport | MemLink] = []

    def transport(self, settings: SessionSettings, handler: SessionHandler) -> MemTransport:
        made = MemTransport(self, settings, handler)
        self._made.append(made)
        return made

    def link(self, settings: LinkSettings, *, subscriptions: Sequence[str],
             on_message: Callable[[str, bytes], None],
             on_connect: Callable[[], None] = lambda: None,
             on_problem: Callable[[str | None], None] = lambda _problem: None,
             will: tuple[str, bytes] | None = None, log_problems: bool = True) -> MemLink:
        made = MemLink(self, settings, subscriptions=subscriptions, on_message=on_message,
                       on_connect=on_connect, on_problem=on_problem, will=will,
                       log_problems=log_problems)
        self._made.append(made)
        return made

    def probe(self, client_id: str) -> MemProbe:
        return MemProbe(self, client_id)

    def kill(self) -> None:
        """The broker crashes: every client goes offline; queued messages are lost."""
        with self.cond:
            self.broker.crash(now=time.monotonic())
            self.up = False
            self.cond.notify_all()

    def restart(self) -> None:
        with self.cond:
            self.up = True
            self.cond.notify_all()

    def save(self) -> None:
        """Nothing to do: the in-memory broker keeps its sessions through a crash."""

    def sever(self, client_id: str) -> None:
        """The process of the client connected as ``client_id`` dies (see ``_Connection``)."""
        for made in self._made:
            if made.connection.client_id == client_id and made.connection.online:
                made.connection.sever()

    def cut(self, client_id: str) -> None:
        """The client connected as ``client_id`` loses the network until ``mend(client_id)``
        (see the module doc; unlike ``sever``, it lives on and connects again then)."""
        with self.cond:
            self.cut_off.add(client_id)
            for made in self._made:
                if made.connection.client_id == client_id:
                    made.connection.lose()
            self.cond.notify_all()

    def mend(self, client_id: str) -> None:
        """The client reaches the broker again: it connects as after any loss."""
        with self.cond:
            self.cut_off.discard(client_id)
            self.cond.notify_all()

    def call(self, fn: Callable[[MemBroker], object]) -> object:
        """Run ``fn(broker)`` under the network's lock (for a look at, or a fault in, it)."""
        with self.cond:
            result = fn(self.broker)
            self.cond.notify_all()
            return result

    def close(self) -> None:
        """Stop every client still running (a test's teardown)."""
        for made in self._made:
            made.connection.stop()
