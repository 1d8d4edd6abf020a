"""A tablet offline for a simulated shift: 300 driver actions recorded offline while the gateway
makes 1,000 changes to its route; on reconnect everything converges, nothing lost or doubled."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from agent.store import Store as TabletStore
from gateway.store.devices import DeviceStore
from sync.envelope import ViewChange
from tests.system.depot import Depot, in_step, reopen, values, wait_for

pytestmark = [pytest.mark.slow]

ORDERS = [f"S{n:03d}" for n in range(50)]
EXPORTS = 20  # x 50 re-sequenced stops = 1,000 changes to driver 7's route
ACTIONS = 300


def export_rows(version: int) -> list[tuple[str, str, int, str]]:
    return [(o, "7", (n * 7 + version * 3) % len(ORDERS) + 1, "PLANNED")
            for n, o in enumerate(ORDERS)]


def action(i: int) -> tuple[str, str]:
    """The shift: arrive at every stop, many notes, then deliver every stop."""
    order_id = ORDERS[i % len(ORDERS)]
    if i < len(ORDERS):
        return "arrive", order_id
    if i >= ACTIONS - len(ORDERS):
        return "deliver", order_id
    return "note", order_id


def test_a_shift_offline_converges_with_every_action_stored_once(
        depot: Depot, monkeypatch: pytest.MonkeyPatch) -> None:
    depot.export(export_rows(0))
    tab = depot.add_device("tab-7", "7")
    assert wait_for(lambda: len(tab.route()) == len(ORDERS) and in_step(depot, tab, "tab-7"), 30)
    seq_before = tab.sync_status().last_seq
    tab.stop()  # the tablet drops off the network for the shift

    applied: list[int] = []
    real_apply = TabletStore.apply_changes

    def recording_apply(self: TabletStore, entries: Sequence[ViewChange], *args: Any,
                        **kwargs: Any) -> None:
        real_apply(self, entries, *args, **kwargs)
        applied.extend(e.seq for e in entries)
        batches.append(len(entries))

    batches: list[int] = []
    monkeypatch.setattr(TabletStore, "apply_changes", recording_apply)

    offline = reopen(depot, "tab-7", "7", start=False)
    event_ids: list[str] = []
    per_export = ACTIONS // EXPORTS
    for version in range(1, EXPORTS + 1):
        for i in range((version - 1) * per_export, version * per_export):
            kind, order_id = action(i)
            event_ids.append(offline.act(kind, order_id, note=f"n{i}" if kind == "note" else None))
        depot.export(export_rows(version))
    assert len(event_ids) == ACTIONS
    assert offline.sync_status().outbox_size == ACTIONS
    depot.service.call(lambda store: None)
    with depot.store() as store:
        assert DeviceStore(store).bounds("tab-7")[1] - seq_before >= EXPORTS * len(ORDERS)
        assert DeviceStore(store).event_count("tab-7") == 0

    offline.start()  # back in range
    assert wait_for(lambda: offline.sync_status().outbox_size == 0, 60), offline.sync_status()
    assert wait_for(lambda: in_step(depot, offline, "tab-7"), 60), offline.sync_status()

    want: dict[str, tuple[Any, ...]] = {
        o: (s, "delivered") for o, _d, s, _st in export_rows(EXPORTS)}
    assert values(offline, "sequence", "status") == want
    assert all(not stop.conflicts and not stop.local for stop in offline.route())
    with depot.store() as store:
        rows = store.conn.execute(
            "SELECT event_id, outcome FROM events WHERE device='tab-7'").fetchall()
        claims = store.conn.execute(
            "SELECT count(*), count(DISTINCT source_rev) FROM claim_sets "
            "WHERE source='driver'").fetchone()
        results = store.pending_results()
    assert sorted(e for e, _ in rows) == sorted(event_ids)  # each stored exactly once
    assert {outcome for _, outcome in rows} == {"applied"}
    assert tuple(claims) == (ACTIONS, ACTIONS)
    assert len(results) == len(ORDERS)  # one write-back row per delivery
    assert len(applied) == len(set(applied)), "a seq was applied twice"
    assert applied == list(range(seq_before + 1, seq_before + 1 + len(applied)))
    assert offline.sync_status().last_seq == seq_before + len(applied)
    # the catch-up came as view_changes, each committed in one transaction
    assert len(batches) < len(applied) and max(batches) > 1, batches
