"""Store migrations for issue 13: events keyed by (device, event id)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from gateway.store.core import Store
from gateway.store.devices import DeviceStore

T0 = dt.datetime(2026, 12, 1, 8, tzinfo=dt.UTC)


def test_events_of_an_older_store_are_kept_and_keyed_by_device(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite"
    with Store(path) as store:  # as an older gateway left it: events keyed by event_id
        store.conn.execute("DROP TABLE events")
        store.conn.execute(
            "CREATE TABLE events (event_id TEXT PRIMARY KEY, device TEXT NOT NULL, order_id "
            "TEXT NOT NULL, action TEXT NOT NULL, received_at TEXT NOT NULL, body TEXT NOT "
            "NULL, outcome TEXT NOT NULL)")
        store.conn.execute("INSERT INTO events VALUES('ev-1','tab-a','O1','arrive',?,'{}',"
                           "'applied')", (T0.isoformat(),))
    with Store(path) as store:
        devices = DeviceStore(store)
        assert devices.event_outcome("tab-a", "ev-1") == "applied"  # kept, with its device
        assert devices.event_outcome("tab-b", "ev-1") is None
        with store.transaction():  # the same id from another device is another event
            assert devices.record_event("ev-1", "tab-b", "O2", "arrive", "{}", "applied", T0)
            assert not devices.record_event("ev-1", "tab-a", "O1", "arrive", "{}", "applied",
                                            T0)  # a resend of tab-a's own
        assert devices.event_count() == 2
    with Store(path) as store:  # migrated once; opening again changes nothing
        assert DeviceStore(store).event_count() == 2
