"""Fixtures for the gateway adapter tests: a scripted loopback HTTP server, an SQLite file
reachable through unixODBC."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from httpserver import ScriptedServer


@pytest.fixture
def http_server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


def _sqlite_odbc_driver() -> str | None:
    try:
        import pyodbc
    except ImportError:
        return None
    for name in ("SQLite3", "SQLite"):
        if name in pyodbc.drivers():
            return name
    return None


@pytest.fixture
def sqlite_odbc(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """An empty SQLite database file and the ODBC connection string that reaches it."""
    driver = _sqlite_odbc_driver()
    if driver is None:
        pytest.skip("unixODBC with the SQLite ODBC driver is not installed")
    path = tmp_path / "legacy.db"
    sqlite3.connect(path).close()
    yield path, f"DRIVER={{{driver}}};Database={path}"
