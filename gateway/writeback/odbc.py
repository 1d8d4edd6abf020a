"""Write-back of driver results into a legacy database table over ODBC.

The table has (at least) the columns of ``RESULT_COLUMNS``: ``result_id, order_id, result,
reason, arrived_at, done_at, note``. Values are always bound as parameters. The table name
cannot be a parameter, so it is checked against a strict identifier pattern (``name`` or
``schema.name``: letters, digits, underscores) and refused with a ``ConfigError`` otherwise;
nothing unvalidated is ever pasted into SQL.

Idempotent: a result whose ``result_id`` is already in the table is skipped, so a job that
crashed after committing, or runs twice, inserts each result once. All inserts of one call
commit together or not at all; a failure is a one-line ``SourceError`` naming the table and,
for an insert, the ``result_id``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping

import pyodbc

from gateway.errors import ConfigError, SourceError
from gateway.ingest.odbc import mask_connection, odbc_message
from gateway.writeback.csvfile import RESULT_COLUMNS, DriverResult

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}(\.[A-Za-z_][A-Za-z0-9_]{0,127})?")


def insert_results_odbc(
    connection: str,
    table: str,
    results: Iterable[DriverResult | Mapping[str, object]],
    *,
    timeout: int = 30,
) -> int:
    """Insert the results not yet in ``table``; returns how many rows were inserted.

    Results may be ``DriverResult``s or mappings keyed by ``RESULT_COLUMNS`` (any case); all are
    checked before connecting.
    """
    if not _IDENTIFIER.fullmatch(table):
        raise ConfigError(
            f"odbc write-back: table name {table!r} is not a plain identifier "
            "(letters, digits, underscores, optionally schema.table)"
        )
    columns = ", ".join(RESULT_COLUMNS)
    marks = ", ".join("?" for _ in RESULT_COLUMNS)
    exists_sql = f"SELECT 1 FROM {table} WHERE result_id = ?"
    insert_sql = f"INSERT INTO {table} ({columns}) VALUES ({marks})"
    batch = [DriverResult.of(result) for result in results]
    where = f"odbc write-back to {table} ({mask_connection(connection)})"
    try:
        conn = pyodbc.connect(connection, timeout=timeout, autocommit=False)
    except pyodbc.Error as exc:
        raise SourceError(f"{where}: cannot connect: {odbc_message(exc)}") from exc
    inserted = 0
    result_id = ""
    try:
        conn.timeout = timeout
        cursor = conn.cursor()
        seen: set[str] = set()
        for result in batch:
            result_id = result.result_id
            if result_id in seen:
                continue
            seen.add(result_id)
            if cursor.execute(exists_sql, result_id).fetchone() is not None:
                continue
            cursor.execute(insert_sql, *result.values())
            inserted += 1
        conn.commit()
    except pyodbc.Error as exc:
        # If the rollback fails too, closing the connection discards the transaction.
        with contextlib.suppress(pyodbc.Error):
            conn.rollback()
        at = f" at result_id {result_id!r}" if result_id else ""
        raise SourceError(f"{where}: insert failed{at}: {odbc_message(exc)}") from exc
    finally:
        conn.close()
    return inserted
