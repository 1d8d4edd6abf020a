"""An ODBC source: one query against a legacy database through pyodbc and unixODBC.

Only this module and ``gateway.writeback.odbc`` import pyodbc. ``exports()`` connects, runs the
query and yields one ``Export`` whose rows stream from the cursor (``fetchmany(1000)``); the
connection closes when the rows are exhausted (or the export is dropped).

* ``connection`` is a DSN (``DSN=legacy`` or just ``legacy``) or a full connection string
  (``DRIVER={SQLite3};Database=/srv/legacy.db``). The export's ``location`` is that string with
  any ``PWD=``/``PASSWORD=`` value masked; ``fingerprint`` is None (a result set has no bytes
  to hash, the gateway's diff does the skipping).
* Rows are dicts keyed by the result's column names, values as the driver gives them (str,
  int, float, Decimal, date, datetime, bytes, None). ``row`` is the 1-based position in the
  result. A result with two columns of the same name is a ``SourceError``: alias one of them.
* ``timeout`` (seconds) is both the login timeout and the query timeout.
* Every pyodbc error becomes a one-line ``SourceError``: source name, masked location, the stage
  (connect, query, fetch) and the driver's message, whitespace collapsed and trimmed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pyodbc

from gateway.errors import SourceError
from gateway.ingest.base import Export, RawRow

FETCH_SIZE = 1000
_MAX_MESSAGE = 300
_SECRET = re.compile(r"(?i)\b((?:PWD|PASSWORD)\s*=\s*)(\{(?:[^}]|\}\})*\}|[^;]*)")


def mask_connection(connection: str) -> str:
    """The connection string with password values replaced by ``***``."""
    return _SECRET.sub(lambda m: m.group(1) + "***", connection)


def odbc_message(error: BaseException) -> str:
    """A pyodbc error's driver message on one line, trimmed."""
    args: tuple[object, ...] = error.args
    text = str(args[1]) if len(args) >= 2 else str(error)
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


class OdbcAdapter:
    """Runs one query against an ODBC data source and yields its rows as one export."""

    def __init__(self, name: str, connection: str, query: str, *, timeout: int = 30) -> None:
        self.name = name
        self.connection = connection if "=" in connection else f"DSN={connection}"
        self.query = query
        self.timeout = timeout
        self.location = mask_connection(self.connection)

    def exports(self) -> Iterator[Export]:
        """Connect and execute now (so a bad DSN or query fails here); rows stream later."""
        try:
            conn = pyodbc.connect(self.connection, timeout=self.timeout)
        except pyodbc.Error as exc:
            raise self._error("cannot connect", exc) from exc
        try:
            conn.timeout = self.timeout
            cursor = conn.cursor()
            cursor.execute(self.query)
            columns = self._columns(cursor)
        except pyodbc.Error as exc:
            conn.close()
            raise self._error("query failed", exc) from exc
        except SourceError:
            conn.close()
            raise
        counters: dict[str, int] = {"rows": 0}
        yield Export(
            location=self.location,
            fingerprint=None,
            rows=self._rows(conn, cursor, columns, counters),
            counters=counters,
        )

    def done(self, export: Export) -> None:
        """Nothing to move aside: a query is read again in full on the next run."""

    def _columns(self, cursor: Any) -> list[str]:
        if cursor.description is None:
            raise SourceError(
                f"odbc source {self.name!r} ({self.location}): the query returns no result set"
            )
        columns = [str(d[0]) for d in cursor.description]
        duplicates = sorted({c for c in columns if columns.count(c) > 1})
        if duplicates:
            names = ", ".join(map(repr, duplicates))
            raise SourceError(
                f"odbc source {self.name!r} ({self.location}): the query returns column(s) "
                f"{names} more than once; alias them"
            )
        return columns

    def _rows(
        self, conn: Any, cursor: Any, columns: list[str], counters: dict[str, int]
    ) -> Iterator[RawRow]:
        row = 0
        try:
            while True:
                try:
                    batch = cursor.fetchmany(FETCH_SIZE)
                except pyodbc.Error as exc:
                    raise self._error(f"fetch failed after row {row}", exc) from exc
                if not batch:
                    return
                for record in batch:
                    row += 1
                    counters["rows"] = row
                    yield RawRow(row=row, values=dict(zip(columns, record, strict=True)))
        finally:
            conn.close()

    def _error(self, stage: str, exc: BaseException) -> SourceError:
        return SourceError(
            f"odbc source {self.name!r} ({self.location}): {stage}: {odbc_message(exc)}"
        )
