"""The sample FoxPro export: readable by the adapter, deterministic, dirty where it says."""

from __future__ import annotations

from pathlib import Path

from gateway.ingest.dbf import read_dbf
from gateway.ingest.dbf_header import read_header
from gateway.sample import write_sample


def test_sample_tables_are_vfp_cp1252_and_read_back_with_the_documented_columns(
    tmp_path: Path,
) -> None:
    info = write_sample(tmp_path, drivers=5, orders=20, seed=3)
    header = read_header(tmp_path / "orders.dbf")
    assert (header.version, header.encoding, header.memo_name) == (0x30, "cp1252", None)
    assert [f.name for f in header.fields] == info["columns"]["orders"]
    assert info["columns"]["orders"][:4] == ["ORDER_ID", "DRIVER_ID", "ROUTE", "SEQ"]
    orders = [r.values for r in read_dbf(tmp_path / "orders.dbf").rows]
    drivers = [r.values for r in read_dbf(tmp_path / "drivers.dbf").rows]
    assert (len(orders), len(drivers)) == (21, 5) == (info["counts"]["orders"], 5)


def test_sample_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    a = write_sample(tmp_path / "a", seed=7)
    b = write_sample(tmp_path / "b", seed=7)
    c = write_sample(tmp_path / "c", seed=8)
    rows = {k: [r.values for r in read_dbf(tmp_path / k / "orders.dbf").rows] for k in "abc"}
    assert rows["a"] == rows["b"] != rows["c"]
    assert a["dirty"] == b["dirty"]
    assert c["counts"] == {"orders": 143, "drivers": 47}


def test_dirty_rows_are_where_the_report_says(tmp_path: Path) -> None:
    info = write_sample(tmp_path, seed=1)
    rows = {r.row: r.values for r in read_dbf(tmp_path / "orders.dbf").rows}
    reasons = {d["field"]: d for d in info["dirty"]}
    assert rows[reasons["LAT"]["row"]]["LAT"] > 90
    assert rows[reasons["STATUS"]["row"]]["STATUS"] == "ZZZ"
    driver_ids = {r.values["DRIVER_ID"] for r in read_dbf(tmp_path / "drivers.dbf").rows}
    assert rows[reasons["DRIVER_ID"]["row"]]["DRIVER_ID"] not in driver_ids
    assert rows[reasons["ETA"]["row"]]["ETA"] is None
    twins = [d["row"] for d in info["dirty"] if d["field"] == "ORDER_ID"]
    assert len(twins) == 2
    assert rows[twins[0]]["ORDER_ID"] == rows[twins[1]]["ORDER_ID"]
    clean = [v for n, v in rows.items() if n not in {d["row"] for d in info["dirty"]}]
    assert all(52.4 < v["LAT"] < 52.7 and 13.2 < v["LON"] < 13.6 for v in clean)
    assert len({v["STATUS"] for v in rows.values()}) >= 6
