"""Limits: a device over its driver-event rate has the excess held and is told so (an ack
with ``delayed``), never dropped: every event is acked in the end. Oversized payloads are
refused and counted (the fuzz tests cover the codec's other refusals)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from gateway.store.core import Store
from gateway.store.devices import DeviceStore
from gateway.streams.limits import TokenBucket
from sync.codec import DEFAULT_MAX_BYTES
from sync.topics import Topics
from tests.security.depot import DEPOT, SecureDepot
from tests.system.depot import wait_for

TOPICS = Topics(DEPOT)


def test_a_token_bucket_gives_a_burst_then_its_rate() -> None:
    bucket = TokenBucket.full(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.wait_s() == pytest.approx(0.5)
    assert not bucket.take(0.4) and bucket.take(0.5)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # capped


@pytest.mark.broker
def test_events_over_the_rate_are_delayed_told_and_all_acked_in_the_end(
        secure_depot: SecureDepot) -> None:
    tablet = secure_depot.add("tab-a", "DRV-001")
    runner = secure_depot.start(event_rate=1.0, event_burst=2)
    with Store(secure_depot.cfg.db_path) as store:
        order = DeviceStore(store).route("DRV-001")[0]
    ids = [f"ev-{n}" for n in range(6)]
    acked: set[str] = set()
    delayed: set[str] = set()
    with secure_depot.login(tablet) as own:
        own.subscribe(TOPICS.acks(tablet.device))
        for event_id in ids:
            at = dt.datetime.now(dt.UTC)
            own.publish(TOPICS.outbox(tablet.device), json.dumps({
                "v": 1, "kind": "driver_event", "id": event_id, "origin": tablet.device,
                "hlc": f"{int(at.timestamp() * 1000):015d}-000000-{tablet.device}",
                "body": {"event_id": event_id, "order_id": order, "action": "note",
                         "note": event_id, "at": at.isoformat()}}).encode())

        def all_acked() -> bool:
            message = own.get(0.5)
            if message is not None:
                body = json.loads(message.payload)["body"]
                acked.update(body.get("event_ids", ()))
                delayed.update(body.get("delayed", ()))
            return acked == set(ids)

        assert wait_for(all_acked, 30)  # none dropped
    assert delayed and delayed <= acked  # some were held, told, and handled later
    assert runner.service is not None
    counters = runner.service.call(lambda store: DeviceStore(store).counters())
    assert counters["rate_limited_events"] == len(delayed)
    assert counters["driver_events"] == len(ids)


@pytest.mark.broker
def test_an_oversized_payload_is_refused_and_counted_and_a_normal_one_handled(
        secure_depot: SecureDepot) -> None:
    tablet = secure_depot.add("tab-a", "DRV-001")
    runner = secure_depot.start()
    with secure_depot.login(tablet) as own:
        status = {"v": 1, "kind": "status", "id": "s", "origin": tablet.device,
                  "hlc": "001795777200000-000000-tab-a",
                  "body": {"role": "device", "online": True, "at": "2026-12-01T08:00:00Z",
                           "app_version": "x" * 10}}
        own.publish(TOPICS.device_status(tablet.device),
                    json.dumps(status).replace('"x', '"' + "x" * DEFAULT_MAX_BYTES, 1).encode())
        own.publish(TOPICS.device_status(tablet.device), json.dumps(status).encode())
    assert runner.service is not None

    def seen() -> dict[str, int]:
        return runner.service.call(lambda store: DeviceStore(store).counters())  # type: ignore[union-attr]

    assert wait_for(lambda: seen().get("bad_messages_too-large") == 1, 30)
    # control: the normal one is stored too (it may land after the count is read: wait for it)
    assert wait_for(lambda: "tab-a" in runner.service.call(  # type: ignore[union-attr]
        lambda store: DeviceStore(store).statuses()), 30)
