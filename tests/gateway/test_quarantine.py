"""Quarantine lifecycle: a run's list replaces the previous one; rows re-tried under a new
mapping close; nothing refused is ever dropped."""

from __future__ import annotations

from pathlib import Path

from legacy import Clock, csv_source, drop_csv, order, write_config, write_mapping

from gateway.ingest.pipeline import ingest_source
from gateway.store.core import Store


def test_a_fixed_row_in_the_next_export_closes_its_quarantine_entry(tmp_path: Path) -> None:
    clock = Clock()
    write_mapping(tmp_path / "legacy.mapping.toml")
    cfg = write_config(tmp_path, csv_source())
    drop_csv(tmp_path / "drops", "a.csv", [order("O-1", LAT="N/A")])
    with Store(cfg.db_path) as store:
        ingest_source(store, cfg, cfg.source("legacy"), now=clock)
        assert [q.order_id for q in store.quarantine()] == ["O-1"]
        drop_csv(tmp_path / "drops", "b.csv", [order("O-1")])
        clock.advance(60)
        (run,) = ingest_source(store, cfg, cfg.source("legacy"), now=clock)
        assert (run.rows_quarantined, run.rows_changed) == (0, 1)
        assert store.quarantine() == []
        (closed,) = store.quarantine(include_closed=True)
        assert closed.closed_why is not None and "superseded by run" in closed.closed_why


def test_a_row_still_wrong_under_the_new_mapping_stays_with_todays_reason(
    tmp_path: Path
) -> None:
    clock = Clock()
    mapping = write_mapping(tmp_path / "legacy.mapping.toml")
    cfg = write_config(tmp_path, csv_source())
    drop_csv(tmp_path / "drops", "a.csv", [order("O-1", STATUS="ZZZ", LAT="N/A")])
    with Store(cfg.db_path) as store:
        ingest_source(store, cfg, cfg.source("legacy"), now=clock)
        assert {q.field for q in store.quarantine()} == {"status", "lat"}
        write_mapping(mapping, extra_status='cancelled = ["ZZZ"]\n')
        clock.advance(60)
        (retry,) = ingest_source(store, cfg, cfg.source("legacy"), now=clock)
        assert (retry.location, retry.rows_quarantined, retry.claims) == (
            "quarantine re-try", 1, 0)
        (still,) = store.quarantine()
        assert (still.order_id, still.field, still.raw) == ("O-1", "lat", "N/A")
