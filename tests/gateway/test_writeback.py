"""flush_writeback against real targets: CSV drops, a VFP table, an SQLite table over ODBC."""

from __future__ import annotations

import csv
import datetime as dt
import sqlite3
from pathlib import Path

import pytest
from dbfread import DBF
from legacy import (
    T0,
    Clock,
    dbf_order,
    foxpro_source,
    write_config,
    write_mapping,
    write_orders_dbf,
)

from gateway.config import GatewayConfig
from gateway.errors import ConfigError, WritebackError
from gateway.ingest.pipeline import ingest_source
from gateway.store.core import Store
from gateway.streams.views import refresh
from gateway.writeback.flush import flush_writeback
from sync.model import Claim

ARRIVED = dt.datetime(2026, 11, 27, 8, 14, tzinfo=dt.UTC)


def _queue(store: Store, n: int, **extra: object) -> None:
    with store.transaction():
        body = {"result_id": f"res-{n}", "order_id": f"ORD-{n:06d}", "result": "delivered",
                "reason": None, "arrived_at": ARRIVED.isoformat(), "done_at": None,
                "note": "an Nachbarn"}
        body.update(extra)
        store.add_result(str(body["result_id"]), str(body["order_id"]), body, T0)


def _cfg(tmp_path: Path, writeback: str) -> GatewayConfig:
    write_mapping(tmp_path / "legacy.mapping.toml")
    return write_config(tmp_path, foxpro_source(), writeback=writeback)


def _csv_rows(folder: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in sorted(folder.glob("results-*.csv")):
        with path.open(newline="", encoding="utf-8") as fh:
            rows.extend(csv.DictReader(fh))
    return rows


def test_csv_writeback_writes_each_result_once_across_flushes_and_a_restart(
    tmp_path: Path
) -> None:
    cfg = _cfg(tmp_path, 'kind = "csv"\npath = "import"')
    with Store(cfg.db_path) as store:
        _queue(store, 1)
        first = flush_writeback(store, cfg, T0)
        assert (first.pending, first.written, first.marked) == (1, 1, 1)
        again = flush_writeback(store, cfg, T0 + dt.timedelta(minutes=1))
        assert (again.pending, again.written) == (0, 0)
        _queue(store, 2)
    with Store(cfg.db_path) as store:  # a restarted gateway
        third = flush_writeback(store, cfg, T0 + dt.timedelta(minutes=2))
        assert third.written == 1
    rows = _csv_rows(tmp_path / "import")
    assert [r["result_id"] for r in rows] == ["res-1", "res-2"]
    assert rows[0]["arrived_at"] == "2026-11-27T09:14:00+01:00"  # the mapping's zone


def test_crash_between_the_write_and_mark_written_duplicates_nothing(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, 'kind = "dbf"\npath = "import/results.dbf"')
    with Store(cfg.db_path) as store:
        _queue(store, 1)
        flush_writeback(store, cfg, T0)
        # the crash: the file holds the row, the store still lists it as pending
        store.conn.execute("UPDATE writeback SET written_at=NULL, target=NULL")
        assert len(store.pending_results()) == 1
        _queue(store, 2)
        after = flush_writeback(store, cfg, T0 + dt.timedelta(minutes=1))
        assert (after.pending, after.written, after.marked) == (2, 1, 2)
        assert store.pending_results() == []
    rows = list(DBF(str(tmp_path / "import" / "results.dbf"), encoding="cp1252"))
    assert [r["RESULT_ID"] for r in rows] == ["res-1", "res-2"]
    assert rows[0]["ARRIVED"] == dt.datetime(2026, 11, 27, 9, 14)  # naive local time for VFP


def test_an_odd_result_is_refused_and_left_pending_without_blocking_the_rest(
    tmp_path: Path
) -> None:
    cfg = _cfg(tmp_path, 'kind = "dbf"\npath = "import"')
    with Store(cfg.db_path) as store:
        _queue(store, 1, result="arrived")  # not an outcome the legacy table holds
        _queue(store, 2)
        summary = flush_writeback(store, cfg, T0)
        assert summary.marked == 1
        assert len(summary.refused) == 1 and summary.refused[0].startswith("res-1: result")
        assert [r["result_id"] for r in store.pending_results()] == ["res-1"]


def test_a_result_too_long_for_the_dbf_columns_is_refused_without_blocking_the_rest(
    tmp_path: Path
) -> None:
    cfg = _cfg(tmp_path, 'kind = "dbf"\npath = "import"')
    with Store(cfg.db_path) as store:
        _queue(store, 1, order_id="ORD-1234567890")  # 14 bytes; ORDER_ID is C(12)
        _queue(store, 2)
        summary = flush_writeback(store, cfg, T0)
        assert summary.marked == 1
        assert summary.refused == ("res-1: ORDER_ID is 14 bytes, the column holds 12",)
        assert [r["result_id"] for r in store.pending_results()] == ["res-1"]
    rows = list(DBF(str(tmp_path / "import" / "results.dbf"), encoding="cp1252"))
    assert [r["RESULT_ID"] for r in rows] == ["res-2"]


def test_writeback_needs_a_section_and_a_path(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "")
    with Store(cfg.db_path) as store, pytest.raises(ConfigError, match="no \\[writeback\\]"):
        flush_writeback(store, cfg, T0)
    cfg = _cfg(tmp_path, 'kind = "csv"')
    with Store(cfg.db_path) as store, pytest.raises(ConfigError, match="needs 'path'"):
        flush_writeback(store, cfg, T0)


def test_an_unwritable_target_is_a_one_line_writeback_error(tmp_path: Path) -> None:
    (tmp_path / "import").write_text("a file, not a folder", encoding="utf-8")
    cfg = _cfg(tmp_path, 'kind = "dbf"\npath = "import/results.dbf"')
    with Store(cfg.db_path) as store:
        _queue(store, 1)
        with pytest.raises(WritebackError) as info:
            flush_writeback(store, cfg, T0)
        assert "\n" not in str(info.value)
        assert len(store.pending_results()) == 1


@pytest.mark.odbc
def test_odbc_writeback_inserts_each_result_once(
    tmp_path: Path, sqlite_odbc: tuple[Path, str]
) -> None:
    db, connection = sqlite_odbc
    with sqlite3.connect(db) as legacy_db:
        legacy_db.execute("CREATE TABLE CROSSDOCK_RESULTS (result_id TEXT, order_id TEXT, "
                          "result TEXT, reason TEXT, arrived_at TEXT, done_at TEXT, note TEXT)")
    cfg = _cfg(tmp_path, f'kind = "odbc"\nconnection = "{connection}"')
    with Store(cfg.db_path) as store:
        _queue(store, 1)
        assert flush_writeback(store, cfg, T0).written == 1
        store.conn.execute("UPDATE writeback SET written_at=NULL")  # as if mark_written was lost
        assert flush_writeback(store, cfg, T0).written == 0
    with sqlite3.connect(db) as legacy_db:
        assert legacy_db.execute("SELECT result_id, result FROM CROSSDOCK_RESULTS").fetchall() \
            == [("res-1", "delivered")]


def test_writeback_echo_in_the_next_export_opens_no_conflict(tmp_path: Path) -> None:
    """A driver delivers; write-back tells FoxPro; the next export says delivered: no conflict."""
    clock = Clock()
    export = tmp_path / "export" / "orders.dbf"
    write_orders_dbf(export, [dbf_order(1), dbf_order(2)])
    cfg = _cfg(tmp_path, 'kind = "dbf"\npath = "import/results.dbf"')
    policy = cfg.merge_policy()
    with Store(cfg.db_path) as store:
        ingest_source(store, cfg, cfg.source("legacy"), now=clock)
        refresh(store, policy, clock())
        legacy = {c.field: c for c in store.claims_for(["ORD-000001"])["ORD-000001"]}
        clock.advance(3600)
        with store.transaction():
            store.add_claim_set(set_id="driver:tap-1", source="driver", order_id="ORD-000001",
                                vals={"status": "delivered"}, as_of=clock(),
                                received_at=clock(), hlc=store.next_hlc(clock()),
                                based_on=[legacy["status"].claim_id])
            store.add_result("res-1", "ORD-000001", {
                "result_id": "res-1", "order_id": "ORD-000001", "result": "delivered",
                "arrived_at": clock().isoformat(), "done_at": clock().isoformat()}, clock())
        refresh(store, policy, clock())
        assert store.conflict_views() == []
        assert flush_writeback(store, cfg, clock()).written == 1
        # FoxPro imported the result: the next nightly export says delivered
        write_orders_dbf(export, [dbf_order(1, status="DELIVERED"), dbf_order(2)])
        clock.advance(86400)
        (run,) = ingest_source(store, cfg, cfg.source("legacy"), now=clock)
        assert (run.rows_changed, run.claims) == (1, 1)
        refresh(store, policy, clock())
        assert store.conflict_views() == []
        view = store.view("ORD-000001")
        assert view is not None
        assert (view.fields["status"].state, view.value("status")) == ("agreed", "delivered")
        assert flush_writeback(store, cfg, clock()).pending == 0
    assert isinstance(legacy["status"], Claim)
