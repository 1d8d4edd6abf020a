"""A large export is read and validated in a second process: the result must be exactly what
the single-process path gives, and a failure in the reading process must fail the run cleanly."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.ingest.dbf_header import read_header
from gateway.ingest.pipeline import ingest_source
from gateway.setup import write_sample_config
from gateway.store.core import Store

NOW = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC)


def _depot(root: Path) -> Path:
    info = write_sample_config(root, drivers=12, orders=400, seed=3, depot="p", port=1883,
                               now=NOW)
    return Path(info["config"])


def _ingest(config: Path, *, parallel: bool) -> tuple[list, list, list]:
    cfg = load_config(config)
    with Store(cfg.db_path) as store:
        (summary,) = ingest_source(store, cfg, cfg.sources[0], now=lambda: NOW,
                                   parallel=parallel)
        claims = sorted((o, json.loads(v)) for o, v in store.conn.execute(
            "SELECT order_id, vals FROM claim_sets"))
        quarantine = [(q.row, q.field, q.reason) for q in store.quarantine()]
    return [summary.status, summary.rows_read, summary.rows_changed, summary.rows_quarantined,
            summary.claims], claims, quarantine


def test_second_process_ingest_equals_single_process_ingest(tmp_path: Path):
    one = _ingest(_depot(tmp_path / "one"), parallel=False)
    two = _ingest(_depot(tmp_path / "two"), parallel=True)
    assert one == two
    assert one[0][0] == "ok" and one[0][3] == 6  # the sample's dirty rows, both ways


def test_a_failure_in_the_reading_process_fails_the_run_and_changes_nothing(tmp_path: Path):
    config = _depot(tmp_path / "bad")
    cfg = load_config(config)
    table = cfg.path(cfg.sources[0].path or "")
    header = read_header(table)
    with table.open("r+b") as fh:  # record 7 becomes an end-of-file mark: broken structure
        fh.seek(header.header_length + 6 * header.record_length)
        fh.write(b"\x1a")
    with Store(cfg.db_path) as store:
        (summary,) = ingest_source(store, cfg, cfg.sources[0], now=lambda: NOW, parallel=True)
        assert summary.status == "failed"
        assert "end-of-file mark at record 7" in (summary.error or "")
        assert "\n" not in (summary.error or "")
        assert store.conn.execute("SELECT count(*) FROM claim_sets").fetchone()[0] == 0
        assert store.quarantine() == []


@pytest.mark.parametrize("parallel", [False, True])
def test_unchanged_export_is_skipped_either_way(tmp_path: Path, parallel: bool):
    config = _depot(tmp_path / "d")
    cfg = load_config(config)
    with Store(cfg.db_path) as store:
        ingest_source(store, cfg, cfg.sources[0], now=lambda: NOW, parallel=parallel)
        (again,) = ingest_source(store, cfg, cfg.sources[0], now=lambda: NOW, parallel=parallel)
    assert again.status == "skipped"
