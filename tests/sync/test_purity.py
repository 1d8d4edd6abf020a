"""sync/ is pure: it imports no other crossdock package and nothing that does I/O."""

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
