"""A small fake gateway for agent tests, built from paho and sync.codec only.

It keeps one device's changelog, publishes ``ViewChange`` entries (or ``ViewChanges``
batches) to the device's inbox, answers ``Resync`` with a replay (or a snapshot when its log
was compacted), records ``Applied``, and stores driver events de-duplicated by event id,
acking each (unless told not to). Waits use a condition variable with a timeout, never sleeps.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from sync.codec import decode, encode
from sync.envelope import (
    Ack,
    AckMsg,
    AppliedMsg,
    DriverEvent,
    DriverEventMsg,
    ResyncMsg,
    Snapshot,
    SnapshotMsg,
    SourceFreshness,
    Status,
    StatusMsg,
    ViewChange,
    ViewChangeMsg,
    ViewChanges,
    ViewChangesMsg,
)
from sync.errors import CodecError
from sync.model import OrderView
from sync.streams import Replay, SendSnapshot, plan_repair
from sync.topics import Topics
from tests.agent.factories import at

WAIT = 4.0
_ids = itertools.count(1)


class FakeGateway:
    def __init__(self, host: str, port: int, *, depot: str = "depot-1", device: str = "tab-07"):
        self.topics = Topics(depot)
        self.device = device
        self.log: list[ViewChange] = []
        self.first = 1
        self.auto_ack = True
        self.received: list[DriverEvent] = []  # every delivery, duplicates included
        self.stored: dict[str, DriverEvent] = {}
        self.resyncs: list[int] = []
        self.applied: list[int] = []
        self._compacted: dict[str, OrderView] = {}
        self._cond = threading.Condition()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"fake-gw-{next(_ids)}", protocol=mqtt.MQTTv5
        )
        self._client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._connected = threading.Event()
        self._client.connect(host, port, keepalive=10)
        self._client.loop_start()
        if not self._connected.wait(WAIT):
            self.close()
            raise AssertionError("fake gateway could not connect")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    # -- what a test makes the gateway do ----------------------------------------------------

    def change(self, order_id: str, view: OrderView | None, *, send: bool = True) -> int:
        """Append an entry to the device's log (and publish it unless ``send=False``)."""
        with self._cond:
            entry = ViewChange(seq=self.last + 1, order_id=order_id, view=view)
            self.log.append(entry)
        if send:
            self.send(entry.seq)
        return entry.seq

    @property
    def last(self) -> int:
        return self.first - 1 + len(self.log)

    def send(self, seq: int) -> None:
        self._publish(self.topics.inbox(self.device), self._entry(seq))

    def send_batch(self, first: int, last: int) -> None:
        """Entries ``first..last`` as one ``view_changes`` message, with the log's head."""
        entries = tuple(self.log[seq - self.first] for seq in range(first, last + 1))
        body = ViewChanges(entries=entries, head=self.last)
        self._publish(self.topics.inbox(self.device),
                      encode(ViewChangesMsg(kind="view_changes", body=body, **self._head())))

    def send_snapshot(self) -> None:
        self._publish(self.topics.inbox(self.device), self._snapshot())

    def send_snapshot_parts(self, order: list[int]) -> int:
        """The snapshot in parts of one view each (at least one part), sending parts ``order``
        (1-based, in that order; missing ones are lost). Returns how many parts it has."""
        views = list(self.views().values())
        chunks: list[tuple[OrderView, ...]] = [(v,) for v in views] or [()]
        for part in order:
            body = Snapshot(seq=self.last, views=chunks[part - 1], part=part, parts=len(chunks))
            self._publish(self.topics.inbox(self.device),
                          encode(SnapshotMsg(kind="snapshot", body=body, **self._head())))
        return len(chunks)

    def publish_raw(self, topic: str, payload: bytes) -> None:
        self._publish(topic, payload)

    def publish_status(self, sources: tuple[SourceFreshness, ...], *, online: bool = True
                       ) -> None:
        status = Status(role="gateway", online=online, at=at(10), sources=sources)
        payload = encode(StatusMsg(kind="status", body=status, **self._head()))
        self._publish(self.topics.gateway_status, payload, retain=True)

    def compact(self) -> None:
        """Forget the log (as a gateway does after compaction): resyncs get a snapshot."""
        with self._cond:
            views = self.views()
            self.first = self.last + 1
            self.log = []
            self._compacted = views

    def ack(self, *event_ids: str) -> None:
        body = Ack(event_ids=event_ids)
        self._publish(
            self.topics.acks(self.device), encode(AckMsg(kind="ack", body=body, **self._head()))
        )

    def views(self) -> dict[str, OrderView]:
        views = dict(self._compacted)
        for entry in self.log:
            if entry.view is None:
                views.pop(entry.order_id, None)
            else:
                views[entry.order_id] = entry.view
        return views

    def wait_for(self, condition: Callable[[], bool], timeout: float = WAIT) -> bool:
        with self._cond:
            return self._cond.wait_for(condition, timeout)

    # -- internals ---------------------------------------------------------------------------

    def _head(self) -> dict[str, Any]:
        ms = int(time.time() * 1000)
        return {
            "v": 1,
            "id": f"gw-{next(_ids)}",
            "origin": "gateway",
            "hlc": f"{ms:015d}-000000-gw",
        }

    def _entry(self, seq: int) -> bytes:
        entry = self.log[seq - self.first]
        return encode(ViewChangeMsg(kind="view_change", body=entry, **self._head()))

    def _snapshot(self) -> bytes:
        body = Snapshot(seq=self.last, views=tuple(self.views().values()))
        return encode(SnapshotMsg(kind="snapshot", body=body, **self._head()))

    def _publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(WAIT)

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        client.subscribe(self.topics.outbox(self.device), qos=1)
        self._connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            envelope = decode(message.payload)
        except CodecError:
            return
        out: list[bytes] = []
        ack: str | None = None
        with self._cond:
            if isinstance(envelope, ResyncMsg):
                after = envelope.body.after
                self.resyncs.append(after)
                plan = plan_repair(after, first=self.first, last=self.last)
                if isinstance(plan, Replay):
                    out = [self._entry(seq) for seq in range(plan.first, plan.last + 1)]
                elif isinstance(plan, SendSnapshot):
                    out = [self._snapshot()]
            elif isinstance(envelope, AppliedMsg):
                self.applied.append(envelope.body.seq)
            elif isinstance(envelope, DriverEventMsg):
                event = envelope.body
                self.received.append(event)
                self.stored.setdefault(event.event_id, event)
                if self.auto_ack:
                    ack = event.event_id
            self._cond.notify_all()
        inbox = self.topics.inbox(self.device)
        for payload in out:
            client.publish(inbox, payload, qos=1)
        if ack is not None:
            body = Ack(event_ids=(ack,))
            client.publish(
                self.topics.acks(self.device),
                encode(AckMsg(kind="ack", body=body, **self._head())),
                qos=1,
            )
