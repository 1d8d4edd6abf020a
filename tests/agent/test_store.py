"""The tablet store: one transaction per operation, the outbox, the receiver state."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agent.errors import StoreError
from agent.store import Store
from sync.envelope import DriverEvent, DriverEventMsg, ViewChange
from sync.hlc import Hlc
from sync.streams import Receiver
from tests.agent.factories import at, conflicted, view


def _event(event_id: str, order_id: str = "A", action: str = "deliver") -> DriverEventMsg:
    return DriverEventMsg(
        v=1,
        kind="driver_event",
        id=event_id,
        origin="tab-07",
        hlc="000000000000001-000000-tab-07",
        body=DriverEvent(event_id=event_id, order_id=order_id, action=action, at=at(3)),  # type: ignore[arg-type]
    )


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(tmp_path / "tab.sqlite")
    yield s
    s.close()


def test_apply_change_stores_view_and_seq_together(store: Store) -> None:
    store.apply_change(1, "A", view("A"), at=at(1))
    store.apply_change(2, "B", view("B"), at=at(2))
    assert store.receiver() == Receiver(last=2)
    assert [v.order_id for v in store.views()] == ["A", "B"]
    store.apply_change(3, "A", None, at=at(3))
    assert [v.order_id for v in store.views()] == ["B"]
    assert store.last_sync_at() == at(3)


def test_a_view_is_stored_without_its_defaults_and_reads_back_equal(
    store: Store, tmp_path: Path
) -> None:
    a, b = view("A"), conflicted("B").model_copy(update={"hold": True})
    store.apply_change(1, "A", a, at=at(1))
    store.apply_snapshot(5, [b], at=at(2))
    store.apply_change(6, "A", a, at=at(3))
    assert store.views() == [a, b]
    assert store.view("B") == b
    conn = sqlite3.connect(tmp_path / "tab.sqlite")
    rows = dict(conn.execute("SELECT order_id, json FROM views").fetchall())
    conn.close()
    assert rows == {"A": a.model_dump_json(exclude_defaults=True),
                    "B": b.model_dump_json(exclude_defaults=True)}
    assert '"stale"' not in rows["A"] and '"hold":true' in rows["B"]


def test_apply_change_out_of_order_changes_nothing(store: Store) -> None:
    store.apply_change(1, "A", view("A"), at=at(1))
    with pytest.raises(StoreError, match="does not follow"):
        store.apply_change(3, "B", view("B"), at=at(2))
    assert store.receiver().last == 1
    assert [v.order_id for v in store.views()] == ["A"]


def test_snapshot_replaces_views(store: Store) -> None:
    store.apply_change(1, "A", view("A"), at=at(1))
    store.apply_snapshot(10, [view("B"), view("C")], at=at(2))
    assert [v.order_id for v in store.views()] == ["B", "C"]
    assert store.receiver().last == 10


def test_action_goes_to_outbox_and_overlay_until_ack_and_next_view(store: Store) -> None:
    store.apply_change(1, "A", view("A"), at=at(1))
    store.record_action(_event("e1"), created_at=at(3))
    store.record_action(_event("e2", action="note"), created_at=at(4))
    assert [i.event_id for i in store.pending()] == ["e1", "e2"]
    assert [a.event_id for a in store.local_actions()] == ["e1", "e2"]
    assert store.ack(["e1", "unknown"]) == ["e1"]
    assert [i.event_id for i in store.pending()] == ["e2"]
    acked = {a.event_id: a.acked for a in store.local_actions()}
    assert acked == {"e1": True, "e2": False}
    store.apply_change(2, "A", view("A", "delivered"), at=at(5))
    assert [a.event_id for a in store.local_actions()] == ["e2"]
    store.ack(["e2"])  # a view came after it was recorded: nothing left to overlay
    assert store.local_actions() == []
    assert store.outbox_size() == 0


def test_outbox_survives_reopen_and_keeps_payload_bytes(tmp_path: Path) -> None:
    path = tmp_path / "tab.sqlite"
    s = Store.open(path)
    message = _event("e1")
    s.record_action(message, created_at=at(3))
    s.close()
    s = Store.open(path)
    try:
        [(event_id, payload)] = s.pending_payloads()
        assert event_id == "e1"
        assert DriverEventMsg.model_validate_json(payload) == message
    finally:
        s.close()


def test_duplicate_event_id_is_refused_and_nothing_half_written(store: Store) -> None:
    store.record_action(_event("e1"), created_at=at(3))
    with pytest.raises(StoreError, match="exists"):
        store.record_action(_event("e1", order_id="B"), created_at=at(4))
    assert len(store.local_actions()) == 1


def test_hlc_never_goes_back_and_persists(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "tab.sqlite")
    first = s.next_stamp("tab", 5000)
    second = s.next_stamp("tab", 4000)  # the wall clock jumped back
    assert second > first
    s.observe_stamp(Hlc(9000, 3, "tab"))
    s.close()
    s = Store.open(tmp_path / "tab.sqlite")
    try:
        assert s.next_stamp("tab", 1000) == Hlc(9000, 4, "tab")
    finally:
        s.close()


def test_store_uses_wal_journal(store: Store, tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "tab.sqlite")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_not_sqlite_is_a_store_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"bad\.sqlite"):
        Store.open(bad)


def test_counters(store: Store) -> None:
    assert store.bump("codec_errors") == 1
    assert store.bump("codec_errors") == 2
    assert store.counters() == {"codec_errors": 2}


def test_stream_entries_commit_without_fsync_and_outbox_writes_with_it(store: Store) -> None:
    def level() -> int:  # PRAGMA synchronous: 1 NORMAL, 2 FULL
        return int(store._db.execute("PRAGMA synchronous").fetchone()[0])

    assert level() == 2
    store.apply_change(1, "A", view("A"), at=at(1))
    assert level() == 1
    store.record_action(_event("e1"), created_at=at(2))
    assert level() == 2
    store.apply_snapshot(5, [view("A")], at=at(3))
    assert level() == 1
    store.ack(["e1"])
    assert level() == 2
    assert store.receiver() == Receiver(last=5) and store.pending() == []


def _entries(first: int, *order_ids: str) -> tuple[ViewChange, ...]:
    return tuple(ViewChange(seq=first + i, order_id=o, view=view(o))
                 for i, o in enumerate(order_ids))


def test_apply_changes_commits_once(store: Store) -> None:
    store.apply_change(1, "A", view("A"), at=at(1))
    statements: list[str] = []
    store._db.conn.set_trace_callback(statements.append)
    store.apply_changes(_entries(2, "B", "C", "D"), at=at(2))
    store._db.conn.set_trace_callback(None)
    assert statements.count("BEGIN IMMEDIATE") == statements.count("COMMIT") == 1
    assert [v.order_id for v in store.views()] == ["A", "B", "C", "D"]
    assert store.receiver() == Receiver(last=4)
    assert store.last_sync_at() == at(2)


def test_apply_changes_not_following_last_changes_nothing(store: Store) -> None:
    store.apply_change(1, "A", view("A"), at=at(1))
    with pytest.raises(StoreError, match="entry 3 does not follow last seq 1"):
        store.apply_changes(_entries(3, "B", "C"), at=at(2))
    with pytest.raises(StoreError, match="not consecutive"):
        store.apply_changes((*_entries(2, "B"), *_entries(4, "C")), at=at(2))
    assert store.receiver() == Receiver(last=1)
    assert [v.order_id for v in store.views()] == ["A"]
    assert store.last_sync_at() == at(1)


def test_a_batch_failing_midway_leaves_nothing_half_applied(store: Store) -> None:
    store.apply_change(1, "A", view("A"), at=at(1))
    store._db.conn.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON views WHEN NEW.order_id = 'BOOM' "
        "BEGIN SELECT RAISE(ABORT, 'disk trouble'); END"
    )
    entries = (ViewChange(seq=2, order_id="A", view=None), *_entries(3, "B", "BOOM", "C"))
    with pytest.raises(StoreError, match="disk trouble"):
        store.apply_changes(entries, at=at(2))
    assert store.receiver() == Receiver(last=1)
    assert [v.order_id for v in store.views()] == ["A"]  # A's removal rolled back too
    store._db.conn.execute("DROP TRIGGER boom")
    store.apply_changes(entries, at=at(2))
    assert [v.order_id for v in store.views()] == ["B", "BOOM", "C"]
    assert store.receiver() == Receiver(last=5)
