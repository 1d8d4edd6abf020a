"""A source's record memory (gateway.store.records): a re-ingest of a FoxPro table decodes only
the records whose bytes (memo blocks included) changed since the last applied run, and its
result is exactly what reading every record gives, whatever happened to the memory."""

from __future__ import annotations

import datetime as dt
import json
import struct
from pathlib import Path
from typing import Any

from gateway.config import GatewayConfig
from gateway.ingest.dbf_header import read_header
from gateway.ingest.pipeline import RunSummary, ingest_source
from gateway.sample import write_vfp_table
from gateway.store.core import Store
from tests.gateway.legacy import dbf_order, foxpro_source, write_config, write_mapping

NOW = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC)
COLUMNS = ("ORDER_ID C(12); DRIVER_ID C(8); STATUS C(12); LAT N(10,6) NULL; LON N(10,6) NULL; "
           "ETA T; NOTES M NULL")
ROWS = 60


def _row(n: int, **values: Any) -> dict[str, Any]:
    base = dbf_order(n, notes=f"ring twice at door {n:03d}" if n % 7 else None)
    row = {k: base[k] for k in ("order_id", "driver_id", "status", "lat", "lon", "eta", "notes")}
    row.update(values)
    return row


def _depot(root: Path, rows: list[dict[str, Any]] | None = None) -> GatewayConfig:
    root.mkdir(parents=True, exist_ok=True)
    write_mapping(root / "legacy.mapping.toml")
    write_vfp_table(root / "export" / "orders.dbf", COLUMNS,
                    rows if rows is not None else [_row(n) for n in range(1, ROWS + 1)])
    return write_config(root, foxpro_source())


def _ingest(cfg: GatewayConfig, *, parallel: bool = True) -> RunSummary:
    with Store(cfg.db_path) as store:
        (summary,) = ingest_source(store, cfg, cfg.sources[0], now=lambda: NOW,
                                   parallel=parallel)
    return summary


def _state(cfg: GatewayConfig) -> list[tuple[str, Any]]:
    with Store(cfg.db_path) as store:
        return [(o, json.loads(v)) for o, v in store.conn.execute(
            "SELECT order_id, vals FROM source_state ORDER BY order_id")]


def _memory(cfg: GatewayConfig) -> dict[int, str]:
    with Store(cfg.db_path) as store:
        return dict(store.conn.execute("SELECT row, order_id FROM source_records"))


def _fresh(cfg: GatewayConfig, root: Path) -> list[tuple[str, Any]]:
    """What a store that never saw the source makes of the table now, read record by record."""
    table = cfg.path(cfg.sources[0].path or "")
    other = _depot(root)
    for suffix in (".dbf", ".fpt"):
        target = other.path(other.sources[0].path or "").with_suffix(suffix)
        target.write_bytes(table.with_suffix(suffix).read_bytes())
    assert _ingest(other, parallel=False).status == "ok"
    return _state(other)


def _poke(cfg: GatewayConfig, recno: int, field: str, data: bytes) -> None:
    """Overwrite one field of one record in place, as a legacy program's REPLACE does."""
    table = cfg.path(cfg.sources[0].path or "")
    header = read_header(table)
    (f,) = [f for f in header.fields if f.name == field]
    with table.open("r+b") as fh:
        fh.seek(header.header_length + (recno - 1) * header.record_length + f.offset)
        fh.write(data.ljust(f.length))


def _rewrite_memo(cfg: GatewayConfig, recno: int, text: bytes) -> None:
    """Rewrite a record's memo in its own block (same length), leaving the record's bytes."""
    table = cfg.path(cfg.sources[0].path or "")
    header = read_header(table)
    (f,) = [f for f in header.fields if f.name == "NOTES"]
    with table.open("rb") as fh:
        fh.seek(header.header_length + (recno - 1) * header.record_length + f.offset)
        (block,) = struct.unpack("<I", fh.read(4))
    memo = table.with_suffix(".fpt")
    with memo.open("r+b") as fh:
        blocksize = struct.unpack(">H", fh.read(8)[6:8])[0]
        fh.seek(block * blocksize)
        _kind, length = struct.unpack(">II", fh.read(8))
        assert length == len(text)
        fh.write(text)


def test_a_reingest_decodes_only_the_records_whose_bytes_changed(tmp_path: Path):
    cfg = _depot(tmp_path / "d")
    first = _ingest(cfg)
    assert (first.status, first.rows_read, first.rows_reused) == ("ok", ROWS, 0)
    assert len(_memory(cfg)) == ROWS
    _poke(cfg, 5, "STATUS", b"DLYD")
    _rewrite_memo(cfg, 9, b"ring ONCE  at door 009")
    again = _ingest(cfg)
    assert (again.status, again.rows_read, again.rows_changed) == ("ok", ROWS, 2)
    assert again.rows_reused == ROWS - 2
    state = dict(_state(cfg))
    assert state["ORD-000005"]["status"] == "delayed"
    assert state["ORD-000009"]["notes"] == "ring ONCE  at door 009"
    assert _state(cfg) == _fresh(cfg, tmp_path / "fresh")


def test_a_memory_that_no_longer_matches_is_read_around_and_repaired(tmp_path: Path):
    cfg = _depot(tmp_path / "d")
    _ingest(cfg)
    with Store(cfg.db_path) as store, store.transaction():
        store.conn.execute("UPDATE source_records SET order_id='ORD-999999' WHERE row=3")
    _poke(cfg, 5, "STATUS", b"DLYD")
    again = _ingest(cfg)
    assert (again.status, again.rows_changed, again.rows_reused) == ("ok", 1, 0)
    assert _state(cfg) == _fresh(cfg, tmp_path / "fresh")
    assert _memory(cfg)[3] == "ORD-000003"
    _poke(cfg, 6, "STATUS", b"DLYD")
    assert _ingest(cfg).rows_reused == ROWS - 1


def test_another_mapping_reads_every_record_again(tmp_path: Path):
    cfg = _depot(tmp_path / "d")
    _ingest(cfg)
    mapping = tmp_path / "d" / "legacy.mapping.toml"
    mapping.write_text(mapping.read_text(encoding="utf-8").replace(
        'delayed = ["DLYD"', 'en_route = ["DLYD"]\ndelayed = ["DELAYED"'), encoding="utf-8")
    _poke(cfg, 5, "STATUS", b"DLYD")
    again = _ingest(cfg)
    assert (again.status, again.rows_reused) == ("ok", 0)
    assert dict(_state(cfg))["ORD-000005"]["status"] == "en_route"
    _poke(cfg, 6, "STATUS", b"DLYD")
    assert _ingest(cfg).rows_reused == ROWS - 1


def test_quarantined_and_deleted_records_leave_the_memory(tmp_path: Path):
    cfg = _depot(tmp_path / "d")
    _ingest(cfg)
    _poke(cfg, 7, "LAT", b"N/A")
    table = cfg.path(cfg.sources[0].path or "")
    header = read_header(table)
    with table.open("r+b") as fh:  # record 8 deleted, as FoxPro's DELETE marks it
        fh.seek(header.header_length + 7 * header.record_length)
        fh.write(b"*")
    again = _ingest(cfg)
    assert (again.status, again.rows_quarantined, again.rows_reused) == ("ok", 1, ROWS - 2)
    assert 7 not in _memory(cfg) and 8 not in _memory(cfg)
    # the quarantined order keeps its last good values (not withdrawn); the deleted one is gone
    state = _state(cfg)
    assert [o for o, _ in state if o == "ORD-000007"] == ["ORD-000007"]
    assert [s for s in state if s[0] != "ORD-000007"] == _fresh(cfg, tmp_path / "fresh")
    _poke(cfg, 7, "LAT", b"52.5")  # fixed: read, claimed again
    fixed = _ingest(cfg)
    assert (fixed.rows_quarantined, fixed.rows_reused) == (0, ROWS - 2)
    assert 7 in _memory(cfg)
    assert _state(cfg) == _fresh(cfg, tmp_path / "fresh2")


def test_a_run_read_without_the_memory_forgets_it(tmp_path: Path):
    cfg = _depot(tmp_path / "d")
    _ingest(cfg)
    _poke(cfg, 5, "STATUS", b"DLYD")
    assert _ingest(cfg, parallel=False).status == "ok"
    assert _memory(cfg) == {}
    _poke(cfg, 5, "STATUS", b"PLANNED")  # the record's first bytes again: read, not reused
    back = _ingest(cfg)
    assert (back.rows_changed, back.rows_reused) == (1, 0)
    assert dict(_state(cfg))["ORD-000005"]["status"] == "planned"


def test_a_held_export_of_known_records_keeps_the_memory_and_is_accepted_whole(tmp_path: Path):
    cfg = _depot(tmp_path / "d")
    _ingest(cfg)
    table = cfg.path(cfg.sources[0].path or "")
    good = table.read_bytes()
    with table.open("r+b") as fh:  # 30 of 60 records withdrawn: held
        fh.seek(0)
        head = bytearray(fh.read(32))
        head[4:8] = struct.pack("<I", 30)
        fh.seek(0)
        fh.write(head)
        fh.truncate(read_header(table).header_length + 30 * read_header(table).record_length)
    held = _ingest(cfg)
    assert held.status == "suspect" and held.rows_reused == 30
    assert held.held is not None and held.held["withdraw"] == 30
    assert len(_state(cfg)) == ROWS and len(_memory(cfg)) == ROWS
    table.write_bytes(good)
    back = _ingest(cfg)
    assert (back.status, back.rows_changed, back.rows_reused) == ("ok", 0, ROWS)
