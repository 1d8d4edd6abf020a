"""What comes in from the broker: each message decoded and authorized (device registered,
not revoked, its own topic and origin), driver events within the device's rate (held, never
dropped, over it), dispatch commands applied once and answered."""

from __future__ import annotations

import collections
import datetime as _dt
import json
import logging
import time
from typing import Any

from gateway.errors import CommandError
from gateway.store.core import Store
from gateway.store.devices import DeviceStore
from gateway.streams import commands
from gateway.streams.limits import DEFERRED_MAX, TokenBucket
from gateway.streams.outflow import Outflow
from gateway.streams.wire import (
    READS_REFUSALS,
    READS_VIEW_CHANGES,
    older_than,
)
from sync.codec import decode, encode
from sync.envelope import (
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
    StatusMsg,
    answer_id,
)
from sync.errors import CodecError

log = logging.getLogger(__name__)


class Inbound(Outflow):
    """The service's handling of one inbound message, on the worker thread."""

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
            v=1, kind="ack", id=answer_id("delayed", event_id), origin="gateway",
            hlc=self._hlc(store),
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
            v=1, kind="ack", id=answer_id("ack", event.event_id), origin="gateway", hlc=hlc,
            body=ack))
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
            v=1, kind="dispatch_reply", id=answer_id("reply", command_id), origin="gateway",
            hlc=hlc,
            body=DispatchReply(command_id=command_id, ok=ok, reason=reason,
                               detail=json.loads(json.dumps(detail or {}, default=str)))))


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
