"""A device's stream ack in the store (``StreamStore.set_applied``): the applied seq never goes
back, the time of the last ack always moves; a store an older gateway wrote gains the column."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

from gateway.store.core import Store
from gateway.store.devices import DeviceStore
from gateway.store.streams import StreamPosition, StreamStore

T0 = dt.datetime(2026, 12, 1, 21, 0, tzinfo=dt.UTC)


def registered(path: Path) -> Store:
    store = Store(path)
    with store.transaction():
        DeviceStore(store).add("tab-1", "D1", "pw-tab-1", T0)
        DeviceStore(store).append("tab-1", [("O-1", '{"order_id":"O-1"}'),
                                            ("O-2", '{"order_id":"O-2"}')], T0)
    return store


def test_a_device_never_acked_has_no_ack_time(tmp_path: Path) -> None:
    with registered(tmp_path / "g.sqlite") as store:
        assert StreamStore(store).stream_positions() == {
            "tab-1": StreamPosition(first=1, last=2, applied=0, acked_at=None)}


def test_an_ack_records_its_time_and_a_late_lower_one_moves_only_the_time(
        tmp_path: Path) -> None:
    with registered(tmp_path / "g.sqlite") as store:
        streams = StreamStore(store)
        with store.transaction():
            streams.set_applied("tab-1", 2, T0 + dt.timedelta(seconds=5))
        assert streams.stream_positions()["tab-1"] == StreamPosition(
            1, 2, 2, (T0 + dt.timedelta(seconds=5)).isoformat())
        with store.transaction():  # redelivered: an older report, heard later
            streams.set_applied("tab-1", 1, T0 + dt.timedelta(minutes=3))
        position = streams.stream_positions()["tab-1"]
        assert position.applied == 2 and position.behind == 0
        assert position.acked_at == (T0 + dt.timedelta(minutes=3)).isoformat()


def test_a_store_written_before_acks_were_recorded_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with registered(path) as store, store.transaction():
        StreamStore(store).set_applied("tab-1", 2, T0)
    conn = sqlite3.connect(path)  # the streams table as an older gateway wrote it
    conn.executescript(
        "CREATE TABLE streams_old (device TEXT PRIMARY KEY, first_seq INTEGER NOT NULL "
        "DEFAULT 1, last_seq INTEGER NOT NULL DEFAULT 0, applied_seq INTEGER NOT NULL "
        "DEFAULT 0); INSERT INTO streams_old SELECT device, first_seq, last_seq, applied_seq "
        "FROM streams; DROP TABLE streams; ALTER TABLE streams_old RENAME TO streams;")
    conn.close()
    with Store(path) as store:
        assert StreamStore(store).stream_positions()["tab-1"] == StreamPosition(1, 2, 2, None)
        with store.transaction():
            StreamStore(store).set_applied("tab-1", 2, T0 + dt.timedelta(hours=1))
        assert StreamStore(store).stream_positions()["tab-1"].acked_at == (
            T0 + dt.timedelta(hours=1)).isoformat()
