"""sync/ is pure: it imports no other crossdock package and nothing that does I/O.

The one exception is the subpackage ``sync/host`` (the store lock both shells take): no pure
module imports it, and it imports nothing of crossdock but ``sync.errors``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SYNC = Path(__file__).resolve().parents[2] / "sync"
FORBIDDEN = {
    "agent", "gateway", "ui", "paho", "sqlite3", "sqlite_utils", "requests", "socket",
    "threading", "asyncio", "subprocess", "kivy", "apscheduler", "time", "random", "os",
    "urllib", "http", "pyodbc", "dbfread", "dbf",
}


@pytest.mark.parametrize("path", sorted(SYNC.glob("*.py")), ids=lambda p: p.name)
def test_sync_module_imports_nothing_impure(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


def test_sync_never_reads_the_wall_clock():
    for path in SYNC.glob("*.py"):
        text = path.read_text()
        for call in ("datetime.now(", "datetime.utcnow(", "date.today(", "time.time("):
            assert call not in text, f"{path.name} calls {call}"


def test_no_pure_module_imports_the_host_corner():
    for path in SYNC.glob("*.py"):
        for name in _imported(path):
            assert not name.startswith("sync.host"), f"{path.name} imports {name}"


@pytest.mark.parametrize("path", sorted((SYNC / "host").glob("*.py")), ids=lambda p: p.name)
def test_the_host_corner_imports_only_sync_errors_of_crossdock(path):
    for name in _imported(path):
        top = name.split(".")[0]
        assert top not in {"agent", "gateway", "ui"}, f"host/{path.name} imports {name}"
        if top == "sync":
            assert name in ("sync.errors", "sync.host.lock"), f"host/{path.name} imports {name}"


def _imported(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.module or ""

