"""Write-back of driver results into a FoxPro table, read back with dbfread."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from dbfread import DBF

from gateway.errors import GatewayError
from gateway.ingest.dbf import read_dbf
from gateway.ingest.dbf_header import read_header
from gateway.writeback.dbffile import append_results_dbf

ARRIVED = dt.datetime(2024, 6, 3, 9, 14, 5)
DONE = dt.datetime(2024, 6, 3, 9, 21, 40)


def _result(n: int, **extra: object) -> dict[str, object]:
    base: dict[str, object] = {
        "RESULT_ID": f"res-{n:04d}", "ORDER_ID": f"ORD-{n:06d}", "RESULT": "delivered",
        "REASON": "", "ARRIVED": ARRIVED, "DONE": DONE, "NOTE": "Übergabe an Nachbarn",
    }  # fmt: skip
    base.update(extra)
    return base


def test_results_are_created_then_appended_and_dbfread_reads_them_back(tmp_path: Path) -> None:
    path = tmp_path / "results.dbf"
    assert append_results_dbf(path, [_result(1)]) == 1
    assert append_results_dbf(path, [_result(2, RESULT="failed", REASON="nobody home")]) == 1
    rows = list(DBF(str(path), encoding="cp1252"))
    assert [r["RESULT_ID"] for r in rows] == ["res-0001", "res-0002"]
    assert rows[0]["ARRIVED"] == ARRIVED and rows[0]["DONE"] == DONE
    assert rows[0]["NOTE"] == "Übergabe an Nachbarn"
    assert (rows[1]["RESULT"], rows[1]["REASON"]) == ("failed", "nobody home")
    header = read_header(path)
    assert (header.version, header.encoding, header.memo_name) == (0x30, "cp1252", None)


def test_results_already_in_the_file_are_not_written_twice(tmp_path: Path) -> None:
    path = tmp_path / "results.dbf"
    append_results_dbf(path, [_result(1), _result(2)])
    assert append_results_dbf(path, [_result(2), _result(3), _result(3)]) == 1
    ids = [r.values["RESULT_ID"] for r in read_dbf(path).rows]
    assert ids == ["res-0001", "res-0002", "res-0003"]


def test_blank_times_and_lower_case_keys_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "results.dbf"
    result = {"result_id": "r-1", "order_id": "ORD-1", "result": "Refused", "arrived": None}
    assert append_results_dbf(path, [result]) == 1
    (row,) = [r.values for r in read_dbf(path).rows]
    assert (row["RESULT"], row["ARRIVED"], row["DONE"]) == ("refused", None, None)


def test_invalid_results_are_refused_before_the_file_is_touched(tmp_path: Path) -> None:
    path = tmp_path / "results.dbf"
    with pytest.raises(GatewayError, match="res-0002: RESULT 'lost'"):
        append_results_dbf(path, [_result(1), _result(2, RESULT="lost")])
    assert not path.exists()
    aware = dt.datetime(2024, 6, 3, 9, 0, tzinfo=dt.UTC)
    with pytest.raises(GatewayError, match="time zone"):
        append_results_dbf(path, [_result(1, DONE=aware)])
    with pytest.raises(GatewayError, match="ORDER_ID is 13 bytes"):
        append_results_dbf(path, [_result(1, ORDER_ID="X" * 13)])


def test_long_note_is_cut_to_the_column(tmp_path: Path) -> None:
    path = tmp_path / "results.dbf"
    append_results_dbf(path, [_result(1, NOTE="n" * 300)])
    (row,) = [r.values for r in read_dbf(path).rows]
    assert row["NOTE"] == "n" * 254
