"""A tablet behind a compacted changelog gets a snapshot; a route too large for one message
comes in parts, and the tablet takes the whole route or nothing."""

from __future__ import annotations

from typing import Any

from gateway.store.core import Store
from gateway.store.devices import DeviceStore
from sync.codec import decode
from sync.envelope import SnapshotMsg
from tests.system.depot import Depot, in_step, reopen, values, wait_for

ORDERS = [f"S{n:02d}" for n in range(12)]


def test_a_route_too_large_for_one_message_arrives_as_a_snapshot_in_parts(
        depot: Depot) -> None:
    depot.export([(o, "7", n + 1, "PLANNED") for n, o in enumerate(ORDERS)])
    tab = depot.add_device("tab-7", "7")
    assert wait_for(lambda: in_step(depot, tab, "tab-7"), 20)
    tab.stop()  # away while the route changes and the changelog is compacted
    depot.export([(o, "7", len(ORDERS) - n, "PLANNED") for n, o in enumerate(ORDERS)])

    def compact(store: Store) -> None:
        with store.transaction():
            DeviceStore(store).compact("tab-7", 0)

    depot.service.call(compact)
    sent: list[SnapshotMsg] = []
    publish = depot.service.link.publish

    def recording(topic: str, payload: bytes, **kw: Any) -> Any:
        if topic.endswith("/tab-7/inbox"):
            env = decode(payload)
            if isinstance(env, SnapshotMsg):
                sent.append(env)
        return publish(topic, payload, **kw)

    depot.service.link.publish = recording  # type: ignore[method-assign]
    with depot.store() as store:
        body = next(iter(DeviceStore(store).sent("tab-7").values()))
    depot.service.snapshot_part_chars = 3 * len(body)  # about three stops a part

    back = reopen(depot, "tab-7", "7")
    assert wait_for(lambda: in_step(depot, back, "tab-7"), 20)
    parts = [m.body for m in sent]
    assert len(parts) >= 4 and {p.parts for p in parts} == {len(parts)}
    assert sorted(p.part for p in parts) == list(range(1, len(parts) + 1))
    assert sum(len(p.views) for p in parts) == len(ORDERS)
    assert values(back, "sequence") == {o: (len(ORDERS) - n,) for n, o in enumerate(ORDERS)}
