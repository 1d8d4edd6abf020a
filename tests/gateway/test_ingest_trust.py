"""Legacy ingest a depot can trust (issue 11): dirt quarantines its row, not the file; a
suspicious export is held, not applied; fingerprints compare with what is applied now; run
status says what happened. Real VFP tables and CSV drops, a real SQLite store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from legacy import (
    Clock,
    csv_source,
    dbf_order,
    drop_csv,
    foxpro_source,
    order,
    write_config,
    write_mapping,
    write_orders_dbf,
)

from gateway.config import GatewayConfig
from gateway.ingest.dbf_header import read_header
from gateway.ingest.pipeline import RunSummary, ingest_source
from gateway.store.core import Store
from gateway.store.runs import held
from gateway.streams.status import source_freshness
from gateway.streams.views import refresh


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _fox(tmp_path: Path, n: int = 10, **extra: object) -> GatewayConfig:
    write_mapping(tmp_path / "legacy.mapping.toml")
    write_orders_dbf(tmp_path / "export" / "orders.dbf", [dbf_order(i) for i in range(1, n + 1)])
    return write_config(tmp_path, foxpro_source(**extra))


def _table(cfg: GatewayConfig) -> Path:
    return cfg.path(cfg.sources[0].path or "")


def _run(store: Store, cfg: GatewayConfig, clock: Clock, **kw: object) -> list[RunSummary]:
    clock.advance(60)
    return ingest_source(store, cfg, cfg.sources[0], now=clock, parallel=False,
                         **kw)  # type: ignore[arg-type]


def _poke(table: Path, record: int, field: str, data: bytes) -> None:
    """Overwrite one field of one record (1-based) with ``data``, right-justified."""
    header = read_header(table)
    f = next(f for f in header.fields if f.name == field)
    with table.open("r+b") as fh:
        fh.seek(header.header_length + (record - 1) * header.record_length + f.offset)
        fh.write(data.rjust(f.length))


def _live(store: Store) -> int:
    return store.source_order_count("legacy")


def _claim_sets(store: Store) -> int:
    return int(store.conn.execute("SELECT count(*) FROM claim_sets").fetchone()[0])


# --- dirt quarantines the row ---------------------------------------------------------------


@pytest.mark.parametrize(("field", "dirt", "why"), [
    ("LAT", b"N/A", "invalid number"),
    ("SEQ", b"#", "invalid number"),
    ("ETA", b"\xff\xff\xff\xff\xff\xff\xff\xff", "ETA: "),
    ("CUSTOMER", b"Kunde \x81", "byte 0x81 cannot be decoded as cp1252"),
])
def test_dirt_in_a_field_quarantines_that_row_and_ingests_the_rest(
    tmp_path: Path, clock: Clock, field: str, dirt: bytes, why: str
) -> None:
    cfg = _fox(tmp_path)
    _poke(_table(cfg), 4, field, dirt)
    with Store(cfg.db_path) as store:
        (run,) = _run(store, cfg, clock)
        assert (run.status, run.rows_read, run.rows_quarantined) == ("ok", 10, 1)
        assert _live(store) == 9
        (q,) = store.quarantine()
        assert (Path(q.location).name, q.row, q.order_id, q.field) == (
            "orders.dbf", 4, "ORD-000004", field)
        assert q.raw.replace(" ", "").endswith(dirt.hex())  # the raw bytes, in hex
        assert why in q.reason


def test_most_rows_undecodable_refuses_the_file_and_names_the_likely_encoding(
    tmp_path: Path, clock: Clock
) -> None:
    cfg = _fox(tmp_path)
    with Store(cfg.db_path) as store:
        _run(store, cfg, clock)
        before = _claim_sets(store)
        for i in range(1, 9):  # UTF-8 text in a file whose mark says cp1252... but unmarked
            _poke(_table(cfg), i, "CUSTOMER", "Łódź".encode())
        data = bytearray(_table(cfg).read_bytes())
        data[29] = 0  # no code page mark: the configured cp1252 decides, and 0x81 is not in it
        _table(cfg).write_bytes(bytes(data))
        (run,) = _run(store, cfg, clock)
        assert run.status == "failed"
        assert run.error is not None and "\n" not in run.error
        assert "8 of 10 rows fail the same way (undecodable bytes)" in run.error
        assert "likely utf-8" in run.error
        assert _claim_sets(store) == before and _live(store) == 10


def test_refusal_share_comes_from_the_source_config(tmp_path: Path, clock: Clock) -> None:
    cfg = _fox(tmp_path, refuse_share=0.9)
    for i in range(1, 7):
        _poke(_table(cfg), i, "LAT", b"N/A")
    with Store(cfg.db_path) as store:
        (run,) = _run(store, cfg, clock)  # 6 of 10 alike: under 90 %, quarantined (degraded)
        assert (run.status, run.rows_quarantined) == ("degraded", 6)
        assert run.error == "most rows quarantined (6 of 10)"


# --- suspicious exports are held ------------------------------------------------------------


def test_an_empty_export_is_held_and_nothing_is_withdrawn(tmp_path: Path, clock: Clock) -> None:
    cfg = _fox(tmp_path)
    with Store(cfg.db_path) as store:
        _run(store, cfg, clock)
        refresh(store, cfg.merge_policy(), clock())
        before = _claim_sets(store)
        write_orders_dbf(_table(cfg), [])
        (run,) = _run(store, cfg, clock)
        assert run.status == "suspect"
        assert run.held is not None and run.held["reason"] == "no records; would withdraw " \
            "10 of 10 live orders (100 % > 20 %)"
        assert (run.held["withdraw"], run.held["live"], run.held["rows_read"]) == (10, 10, 0)
        assert f"--accept {run.run_id}" in (run.error or "")
        assert _claim_sets(store) == before and _live(store) == 10
        (row,) = source_freshness(store, cfg)
        assert row["status"] == "suspect" and row["held"]["run_id"] == run.run_id
        # polled again: still held, no new run recorded
        (again,) = _run(store, cfg, clock)
        assert (again.status, again.run_id) == ("suspect", run.run_id)


def test_a_header_counting_fewer_records_than_the_file_holds_is_held(
    tmp_path: Path, clock: Clock
) -> None:
    cfg = _fox(tmp_path)
    with Store(cfg.db_path) as store:
        _run(store, cfg, clock)
        write_orders_dbf(_table(cfg), [dbf_order(i) for i in range(1, 11)]
                         + [dbf_order(11)])  # a changed export, then its header cut to 5
        data = bytearray(_table(cfg).read_bytes())
        data[4:8] = (5).to_bytes(4, "little")
        _table(cfg).write_bytes(bytes(data))
        assert "header declares 5 records, file holds 11" in read_header(_table(cfg)).problems[0]
        (run,) = _run(store, cfg, clock)
        assert run.status == "suspect"
        assert run.held is not None
        assert run.held["reason"].startswith("header declares 5 records, file holds 11")
        assert _live(store) == 10


def test_withdrawing_more_than_the_configured_share_is_held(tmp_path: Path, clock: Clock) -> None:
    cfg = _fox(tmp_path, withdraw_share=0.5)
    with Store(cfg.db_path) as store:
        _run(store, cfg, clock)
        write_orders_dbf(_table(cfg), [dbf_order(i) for i in range(1, 6)])  # 5 of 10: not > 50 %
        assert _run(store, cfg, clock)[0].status == "ok"
        write_orders_dbf(_table(cfg), [dbf_order(1), dbf_order(2)])  # 3 of 5 gone: 60 %
        (run,) = _run(store, cfg, clock)
        assert run.status == "suspect" and _live(store) == 5


def test_restoring_the_good_export_after_a_held_one_clears_the_hold(
    tmp_path: Path, clock: Clock
) -> None:
    cfg = _fox(tmp_path)
    good = tmp_path / "good.dbf"
    shutil.copy(_table(cfg), good)
    with Store(cfg.db_path) as store:
        _run(store, cfg, clock)
        write_orders_dbf(_table(cfg), [])
        assert _run(store, cfg, clock)[0].status == "suspect"
        shutil.copy(good, _table(cfg))  # what is applied now, byte for byte
        (run,) = _run(store, cfg, clock)
        assert (run.status, run.rows_read, run.rows_changed) == ("ok", 10, 0)
        assert held(store, "legacy") is None and _live(store) == 10
        assert source_freshness(store, cfg)[0]["status"] == "ok"


def test_a_file_equal_to_an_older_run_is_ingested_again(tmp_path: Path, clock: Clock) -> None:
    cfg = _fox(tmp_path)
    first = tmp_path / "first.dbf"
    shutil.copy(_table(cfg), first)
    with Store(cfg.db_path) as store:
        _run(store, cfg, clock)
        write_orders_dbf(_table(cfg), [dbf_order(i, STATUS="DLVD") for i in range(1, 11)])
        assert _run(store, cfg, clock)[0].rows_changed == 10
        assert _run(store, cfg, clock)[0].status == "skipped"  # what is applied now
        shutil.copy(first, _table(cfg))  # equal to an older run, not to the applied one
        (run,) = _run(store, cfg, clock)
        assert (run.status, run.rows_changed) == ("ok", 10)


def test_a_globs_older_unchanged_drops_are_not_applied_again_in_turn(
    tmp_path: Path, clock: Clock
) -> None:
    import os

    write_mapping(tmp_path / "legacy.mapping.toml")
    export = tmp_path / "export"
    write_orders_dbf(export / "a.dbf", [dbf_order(i) for i in range(1, 11)])
    write_orders_dbf(export / "b.dbf", [dbf_order(i, STATUS="DLVD") for i in range(1, 11)])
    os.utime(export / "a.dbf", (1, 1))  # a is the older drop
    cfg = write_config(tmp_path, foxpro_source(path="export/*.dbf"))
    with Store(cfg.db_path) as store:
        assert [r.status for r in _run(store, cfg, clock)] == ["ok", "ok"]
        before = _claim_sets(store)
        assert [r.status for r in _run(store, cfg, clock)] == ["skipped", "skipped"]
        assert _claim_sets(store) == before


def test_accept_applies_the_held_run_and_audits_who(tmp_path: Path, clock: Clock) -> None:
    cfg = _fox(tmp_path)
    with Store(cfg.db_path) as store:
        _run(store, cfg, clock)
        write_orders_dbf(_table(cfg), [dbf_order(1)])
        (held_run,) = _run(store, cfg, clock)
        assert held_run.status == "suspect" and held_run.run_id is not None
        with pytest.raises(Exception, match="is not a held"):
            _run(store, cfg, clock, accept=held_run.run_id + 99, actor="ops")
        (run,) = _run(store, cfg, clock, accept=held_run.run_id, actor="marta")
        assert (run.status, run.rows_changed) == ("ok", 9)
        assert _live(store) == 1 and held(store, "legacy") is None
        (entry,) = [a for a in store.audit_log() if a["action"] == "accept-suspect"]
        assert entry["actor"] == "marta"


def test_a_later_normal_export_clears_the_hold(tmp_path: Path, clock: Clock) -> None:
    cfg = _fox(tmp_path)
    with Store(cfg.db_path) as store:
        _run(store, cfg, clock)
        write_orders_dbf(_table(cfg), [])
        assert _run(store, cfg, clock)[0].status == "suspect"
        write_orders_dbf(_table(cfg), [dbf_order(i, STATUS="DLVD") for i in range(1, 11)])
        (run,) = _run(store, cfg, clock)
        assert (run.status, run.rows_changed) == ("ok", 10)
        assert held(store, "legacy") is None


def test_a_held_csv_drop_is_set_aside_and_accepted_from_there(
    tmp_path: Path, clock: Clock
) -> None:
    write_mapping(tmp_path / "legacy.mapping.toml")
    cfg = write_config(tmp_path, csv_source())
    folder = tmp_path / "drops"
    with Store(cfg.db_path) as store:
        drop_csv(folder, "a.csv", [order(f"O-{i}") for i in range(10)])
        assert _run(store, cfg, clock)[0].status == "ok"
        drop_csv(folder, "b.csv", [order("O-1")])
        (run,) = _run(store, cfg, clock)
        assert run.status == "suspect"
        assert (folder / "held" / "b.csv").is_file() and not (folder / "b.csv").exists()
        assert [r.status for r in _run(store, cfg, clock)] == ["idle"]  # not read again
        (accepted,) = _run(store, cfg, clock, accept=run.run_id, actor="ops")
        assert accepted.status == "ok" and _live(store) == 1
        assert (folder / "processed" / "b.csv").is_file()


# --- honest status --------------------------------------------------------------------------


def test_all_rows_quarantined_is_degraded_not_ok(tmp_path: Path, clock: Clock) -> None:
    write_mapping(tmp_path / "legacy.mapping.toml")
    cfg = write_config(tmp_path, csv_source())
    text = (tmp_path / "legacy.mapping.toml").read_text(encoding="utf-8")
    (tmp_path / "legacy.mapping.toml").write_text(text.replace('"ETA"', '"ETA_TYPO"'),
                                                  encoding="utf-8")
    drop_csv(tmp_path / "drops", "a.csv", [order(f"O-{i}") for i in range(4)])
    with Store(cfg.db_path) as store:
        (run,) = _run(store, cfg, clock)
        assert (run.status, run.rows_quarantined) == ("degraded", 4)
        assert {q.reason for q in store.quarantine()} == {"column ETA_TYPO is missing"}


def test_a_bom_read_as_cp1252_is_named_and_the_rows_are_read(
    tmp_path: Path, clock: Clock
) -> None:
    write_mapping(tmp_path / "legacy.mapping.toml")
    cfg = write_config(tmp_path, csv_source().replace('encoding = "utf-8"', 'encoding = "cp1252"'))
    path = drop_csv(tmp_path / "drops", "a.csv", [order("O-1", NOTES="Köln")])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    with Store(cfg.db_path) as store:
        (run,) = _run(store, cfg, clock)
        assert (run.status, run.rows_read, run.rows_quarantined) == ("ok", 1, 0)
        assert store.source_values("legacy", "O-1") is not None
        (last,) = store.runs("legacy", limit=1)
        assert last.status == "ok"


# --- random damage: quarantined or refused in one line, never half-applied --------------------




@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255) | st.sampled_from(
    [0x81, 0x90, 0x1A, 0x2A, 0x00, 0xFF, ord("x"), ord("/"), ord("-")])), min_size=1,
    max_size=40))
def test_random_byte_flips_in_records_quarantine_or_refuse_never_half_apply(
    tmp_path_factory: pytest.TempPathFactory, flips: list[tuple[int, int]]
) -> None:
    root = tmp_path_factory.mktemp("flip")
    from gateway.setup import write_sample_config

    info = write_sample_config(root, drivers=5, orders=40, seed=3, depot="t", port=1883,
                               now=Clock()())
    from gateway.config import load_config

    cfg = load_config(Path(info["config"]))
    src = cfg.sources[0]
    table = cfg.path(src.path or "")
    clock = Clock()
    with Store(cfg.db_path) as store:
        (first,) = ingest_source(store, cfg, src, now=clock, parallel=False)
        assert first.status in ("ok", "degraded")
        before = (_claim_sets(store), store.conn.execute(
            "SELECT group_concat(order_id || vals) FROM source_state").fetchone()[0])
        header = read_header(table)
        data = bytearray(table.read_bytes())
        body = header.record_count * header.record_length
        for where, value in flips:
            data[header.header_length + where % body] = value
        table.write_bytes(bytes(data))
        clock.advance(60)
        (run,) = ingest_source(store, cfg, src, now=clock, parallel=False)
        after = (_claim_sets(store), store.conn.execute(
            "SELECT group_concat(order_id || vals) FROM source_state").fetchone()[0])
        event(run.status)
        assert run.status in ("ok", "degraded", "suspect", "failed", "skipped"), run
        if run.status in ("failed", "suspect", "skipped"):
            assert after == before  # nothing of it applied
        if run.status == "failed":
            assert run.error and "\n" not in run.error and table.name in run.error
        if run.status in ("ok", "degraded"):
            # every damaged row is either read or quarantined with its record number
            rows = {q.row for q in store.quarantine("legacy")}
            assert run.rows_read >= len(rows)
            assert json.dumps(run.as_dict())
