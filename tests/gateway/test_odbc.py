"""The ODBC adapter and ODBC write-back through real unixODBC and SQLite's ODBC driver."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime
from pathlib import Path

import pytest

from gateway.errors import ConfigError, SourceError
from gateway.ingest.odbc import OdbcAdapter, mask_connection
from gateway.writeback.csvfile import DriverResult
from gateway.writeback.odbc import insert_results_odbc

pytestmark = pytest.mark.odbc

RESULTS_TABLE = """
    CREATE TABLE results (
        result_id TEXT PRIMARY KEY, order_id TEXT NOT NULL,
        result TEXT NOT NULL CHECK (result IN ('delivered', 'failed', 'refused')),
        reason TEXT, arrived_at TIMESTAMP, done_at TIMESTAMP, note TEXT
    )
"""


def run_sql(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    try:
        with conn:
            for statement in statements:
                conn.execute(statement)
    finally:
        conn.close()


def query_sql(path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_rows_come_through_with_their_types_and_nulls(sqlite_odbc: tuple[Path, str]) -> None:
    path, connection = sqlite_odbc
    run_sql(
        path,
        "CREATE TABLE orders (order_id TEXT, stops INTEGER, weight REAL, due TIMESTAMP,"
        " day DATE, note TEXT, photo BLOB)",
        "INSERT INTO orders VALUES ('A1', 3, 2.5, '2026-11-27 08:30:00', '2026-11-27',"
        " 'café', x'0102')",
        "INSERT INTO orders VALUES ('B2', NULL, NULL, NULL, NULL, NULL, NULL)",
    )
    odbc = OdbcAdapter("legacy", connection, "SELECT * FROM orders ORDER BY order_id")
    (export,) = list(odbc.exports())
    assert export.location == connection
    assert export.fingerprint is None
    assert export.complete
    first, second = list(export.rows)
    assert first.row == 1
    assert dict(first.values) == {
        "order_id": "A1",
        "stops": 3,
        "weight": 2.5,
        "due": datetime(2026, 11, 27, 8, 30),
        "day": date(2026, 11, 27),
        "note": "café",
        "photo": b"\x01\x02",
    }
    assert second.row == 2
    assert dict(second.values) == {
        "order_id": "B2",
        "stops": None,
        "weight": None,
        "due": None,
        "day": None,
        "note": None,
        "photo": None,
    }
    assert export.counters == {"rows": 2}


def test_a_large_result_streams_across_fetch_batches_with_continuous_row_numbers(
    sqlite_odbc: tuple[Path, str],
) -> None:
    path, connection = sqlite_odbc
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE orders (order_id INTEGER)")
        conn.executemany("INSERT INTO orders VALUES (?)", [(i,) for i in range(1, 2501)])
    conn.close()
    (export,) = list(OdbcAdapter("legacy", connection, "SELECT order_id FROM orders").exports())
    rows = list(export.rows)
    assert len(rows) == 2500
    assert all(r.row == r.values["order_id"] for r in rows)


def test_an_unknown_dsn_is_a_one_line_source_error() -> None:
    odbc = OdbcAdapter("legacy", "nosuchdsn", "SELECT 1")
    with pytest.raises(SourceError) as caught:
        list(odbc.exports())
    message = str(caught.value)
    assert message.startswith("odbc source 'legacy' (DSN=nosuchdsn): cannot connect: [IM002]")
    assert "Data source name not found" in message
    assert "\n" not in message


def test_a_password_never_appears_in_the_location_or_an_error() -> None:
    odbc = OdbcAdapter("legacy", "DRIVER={No Such Driver};UID=ops;PWD=hunter2", "SELECT 1")
    assert odbc.location == "DRIVER={No Such Driver};UID=ops;PWD=***"
    with pytest.raises(SourceError) as caught:
        list(odbc.exports())
    assert "hunter2" not in str(caught.value)


def test_masking_covers_braced_passwords_and_the_long_keyword() -> None:
    assert mask_connection("DSN=x;Pwd={a;b}}c};Database=y") == "DSN=x;Pwd=***;Database=y"
    assert mask_connection("DSN=x; PASSWORD = s3 ") == "DSN=x; PASSWORD = ***"


def test_a_failing_query_is_a_source_error_naming_the_stage(
    sqlite_odbc: tuple[Path, str],
) -> None:
    _, connection = sqlite_odbc
    odbc = OdbcAdapter("legacy", connection, "SELECT * FROM missing_table")
    with pytest.raises(SourceError, match=r"'legacy'.*query failed: .*no such table"):
        list(odbc.exports())


def test_duplicate_result_columns_are_refused(sqlite_odbc: tuple[Path, str]) -> None:
    _, connection = sqlite_odbc
    odbc = OdbcAdapter("legacy", connection, "SELECT 1 AS a, 2 AS a")
    with pytest.raises(SourceError, match=r"column.*'a'.*more than once"):
        list(odbc.exports())


# -- write-back ----------------------------------------------------------------------------


def result(result_id: str, order_id: str = "A1", outcome: str = "delivered") -> DriverResult:
    return DriverResult(
        result_id=result_id,
        order_id=order_id,
        result=outcome,
        reason=None,
        arrived_at=datetime(2026, 11, 27, 8, 30),
        done_at=datetime(2026, 11, 27, 8, 41, 5),
        note="left with neighbour",
    )


def test_write_back_inserts_each_result_once_across_calls(sqlite_odbc: tuple[Path, str]) -> None:
    path, connection = sqlite_odbc
    run_sql(path, RESULTS_TABLE)
    assert insert_results_odbc(connection, "results", [result("r1"), result("r2", "B2")]) == 2
    assert insert_results_odbc(connection, "results", [result("r1"), result("r3", "C3")]) == 1
    rows = query_sql(path, "SELECT result_id, order_id, result, reason, note FROM results")
    assert sorted(rows) == [
        ("r1", "A1", "delivered", None, "left with neighbour"),
        ("r2", "B2", "delivered", None, "left with neighbour"),
        ("r3", "C3", "delivered", None, "left with neighbour"),
    ]


def test_write_back_times_read_back_through_odbc_as_datetimes(
    sqlite_odbc: tuple[Path, str],
) -> None:
    path, connection = sqlite_odbc
    run_sql(path, RESULTS_TABLE)
    insert_results_odbc(connection, "results", [result("r1")])
    odbc = OdbcAdapter("legacy", connection, "SELECT arrived_at, done_at FROM results")
    (export,) = list(odbc.exports())
    (row,) = list(export.rows)
    assert dict(row.values) == {
        "arrived_at": datetime(2026, 11, 27, 8, 30),
        "done_at": datetime(2026, 11, 27, 8, 41, 5),
    }


def test_write_back_refuses_a_table_name_that_is_not_an_identifier() -> None:
    with pytest.raises(ConfigError, match="not a plain identifier"):
        insert_results_odbc("DSN=unused", "results; DROP TABLE orders", [result("r1")])


def test_a_failed_insert_commits_nothing_and_names_the_result(
    sqlite_odbc: tuple[Path, str],
) -> None:
    path, connection = sqlite_odbc
    run_sql(path, RESULTS_TABLE)
    batch = [result("r1"), result("r2", outcome="teleported")]
    with pytest.raises(SourceError) as caught:
        insert_results_odbc(connection, "results", batch)
    message = str(caught.value)
    assert message.startswith("odbc write-back to results (")
    assert "insert failed at result_id 'r2'" in message
    assert "\n" not in message
    assert query_sql(path, "SELECT count(*) FROM results") == [(0,)]


def test_write_back_accepts_plain_mappings(sqlite_odbc: tuple[Path, str]) -> None:
    path, connection = sqlite_odbc
    run_sql(path, RESULTS_TABLE)
    row = {"result_id": "r9", "order_id": "A1", "result": "refused", "done_at": None}
    assert insert_results_odbc(connection, "results", [row]) == 1
    assert query_sql(path, "SELECT result_id, result, done_at FROM results") == [
        ("r9", "refused", None)
    ]
