"""A store that cannot be written says so in one line naming the file (issue 10): a read-only
store (`gateway run` stops at once instead of failing twice a second; `ingest`, `devices add`
name the file), and a full disk (a file-size limit, RLIMIT_FSIZE): the failed commit is rolled
back whole, the views stay consistent, and the next ingest without the limit completes."""

from __future__ import annotations

import contextlib
import os
import resource
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker import free_port


def crossdock(*args: str, fsize: int | None = None) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run([sys.executable, "-m", "crossdock_cli", *args], capture_output=True,
                          text=True, timeout=60, check=False, preexec_fn=limit)


def one_line(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """The file cannot be written, as on a read-only mount (root ignores the mode bits, so as
    root the file is made immutable instead)."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True)
    else:
        path.chmod(0o444)
    try:
        yield
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        else:
            path.chmod(0o600)


@pytest.fixture
def depot(tmp_path: Path) -> Path:
    out = tmp_path / "depot"
    made = crossdock("gateway", "sample", "--out", str(out), "--port", str(free_port()))
    assert made.returncode == 0, made.stderr
    return out / "gateway.toml"


@pytest.mark.broker
def test_a_read_only_store_stops_gateway_run_with_one_line(depot: Path) -> None:
    db = depot.parent / "gateway.sqlite"
    with read_only(db):
        proc = crossdock("gateway", "run", "--config", str(depot))  # was: looped until killed
        one_line(proc, str(db), "readonly")
        assert "running" not in proc.stderr


def test_commands_writing_a_read_only_store_name_the_file(depot: Path) -> None:
    db = depot.parent / "gateway.sqlite"
    with read_only(db):
        one_line(crossdock("gateway", "ingest", "--config", str(depot)), str(db), "readonly")
        one_line(crossdock("gateway", "devices", "add", "tab-1", "--driver", "DRV-001",
                           "--config", str(depot)), str(db), "readonly")
        listed = crossdock("gateway", "conflicts", "--config", str(depot), "--json")
        assert listed.returncode == 0, listed.stderr  # reading still works


def _counts(db: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("claim_sets", "views", "dirty")}


def test_a_full_disk_names_the_store_and_rolls_the_commit_back_whole(depot: Path) -> None:
    db = depot.parent / "gateway.sqlite"
    # a limit the ingest's claims fit under (WAL included) and the merge to views does not
    # (one-set views are stored as their claim set: 137 of them take a few KiB)
    full = crossdock("gateway", "ingest", "--config", str(depot), fsize=db.stat().st_size + 16384)
    one_line(full, str(db), "disk")
    # whatever committed before the failing transaction is whole: every order with claims
    # either has its view or is still marked for the next refresh; nothing half-written
    with contextlib.closing(sqlite3.connect(db)) as conn:
        unviewed = conn.execute(
            "SELECT count(DISTINCT order_id) FROM claim_sets WHERE order_id NOT IN "
            "(SELECT order_id FROM views) AND order_id NOT IN (SELECT order_id FROM dirty)"
        ).fetchone()[0]
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        claimed = conn.execute("SELECT count(*) FROM claim_sets").fetchone()[0]
    assert unviewed == 0
    assert claimed > 0  # the claims committed; the views' commit failed
    again = crossdock("gateway", "ingest", "--config", str(depot), "--json")
    assert again.returncode == 0, again.stderr
    final = _counts(db)
    assert final["dirty"] == 0 and final["views"] > 0
