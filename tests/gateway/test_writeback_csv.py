"""CSV write-back drops written into tmp_path and read back as the legacy import would."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from gateway.errors import ConfigError, SourceError
from gateway.writeback.csvfile import RESULT_COLUMNS, DriverResult, append_results_csv

CET = timezone(timedelta(hours=1))


def result(result_id: str, note: str | None = "left with neighbour") -> DriverResult:
    return DriverResult(
        result_id=result_id,
        order_id=f"order-{result_id}",
        result="delivered",
        reason=None,
        arrived_at=datetime(2026, 11, 27, 8, 30, tzinfo=CET),
        done_at=datetime(2026, 11, 27, 8, 41, 5, tzinfo=CET),
        note=note,
    )


def read(path: Path, *, encoding: str = "utf-8", delimiter: str = ",") -> list[list[str]]:
    with open(path, newline="", encoding=encoding) as f:
        return list(csv.reader(f, delimiter=delimiter))


def test_a_drop_has_a_header_and_one_line_per_result(tmp_path: Path) -> None:
    path = append_results_csv(tmp_path, [result("r1"), result("r2", note=None)], stamp="0001")
    assert path == tmp_path / "results-0001.csv"
    assert read(path) == [
        list(RESULT_COLUMNS),
        [
            "r1",
            "order-r1",
            "delivered",
            "",
            "2026-11-27T08:30:00+01:00",
            "2026-11-27T08:41:05+01:00",
            "left with neighbour",
        ],
        [
            "r2",
            "order-r2",
            "delivered",
            "",
            "2026-11-27T08:30:00+01:00",
            "2026-11-27T08:41:05+01:00",
            "",
        ],
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results-0001.csv"]  # no temp file


def test_results_already_in_an_earlier_drop_are_not_written_again(tmp_path: Path) -> None:
    append_results_csv(tmp_path, [result("r1"), result("r2")], stamp="0001")
    path = append_results_csv(tmp_path, [result("r2"), result("r3")], stamp="0002")
    assert path is not None
    assert [row[0] for row in read(path)] == ["result_id", "r3"]


def test_when_every_result_was_written_before_no_file_is_written(tmp_path: Path) -> None:
    append_results_csv(tmp_path, [result("r1")], stamp="0001")
    assert append_results_csv(tmp_path, [result("r1")], stamp="0002") is None
    assert not (tmp_path / "results-0002.csv").exists()


def test_a_result_repeated_within_one_call_is_written_once(tmp_path: Path) -> None:
    path = append_results_csv(tmp_path, [result("r1"), result("r1")], stamp="0001")
    assert path is not None
    assert [row[0] for row in read(path)] == ["result_id", "r1"]


def test_an_existing_drop_is_never_overwritten(tmp_path: Path) -> None:
    first = append_results_csv(tmp_path, [result("r1")], stamp="0001")
    assert first is not None
    before = first.read_bytes()
    with pytest.raises(SourceError, match="already exists"):
        append_results_csv(tmp_path, [result("r2")], stamp="0001")
    assert first.read_bytes() == before


@pytest.mark.parametrize("stamp", ["../escape", "a/b", "", "with space"])
def test_a_stamp_that_is_not_a_safe_file_name_is_refused(tmp_path: Path, stamp: str) -> None:
    with pytest.raises(ConfigError, match="not a safe file name"):
        append_results_csv(tmp_path, [result("r1")], stamp=stamp)


def test_legacy_encoding_and_delimiter_replace_what_the_encoding_cannot_hold(
    tmp_path: Path,
) -> None:
    results = [result("r1", note="café 🚚; side door")]
    path = append_results_csv(tmp_path, results, stamp="0001", encoding="cp1252", delimiter=";")
    assert path is not None
    rows = read(path, encoding="cp1252", delimiter=";")
    assert rows[1][-1] == "café ?; side door"
    again = append_results_csv(tmp_path, results, stamp="0002", encoding="cp1252", delimiter=";")
    assert again is None  # earlier drops are read with the same dialect


def test_an_earlier_drop_without_a_result_id_column_is_a_source_error(tmp_path: Path) -> None:
    (tmp_path / "results-0000.csv").write_text("order,status\nA1,ok\n")
    with pytest.raises(SourceError, match=r"results-0000.csv has no result_id column"):
        append_results_csv(tmp_path, [result("r1")], stamp="0001")


def test_files_with_another_prefix_do_not_count_as_earlier_drops(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text("order_id\nA1\n")
    path = append_results_csv(tmp_path, [result("r1")], stamp="0001", prefix="drv_")
    assert path == tmp_path / "drv_0001.csv"


def test_plain_mappings_with_upper_case_keys_are_accepted(tmp_path: Path) -> None:
    row = {"RESULT_ID": "r1", "ORDER_ID": "A1", "RESULT": "failed", "REASON": "closed"}
    path = append_results_csv(tmp_path, [row], stamp="0001")
    assert path is not None
    assert read(path)[1] == ["r1", "A1", "failed", "closed", "", "", ""]


def test_a_mapping_without_a_result_id_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    with pytest.raises(SourceError, match="result for order 'A1': result_id is missing"):
        append_results_csv(tmp_path, [{"order_id": "A1", "result": "delivered"}], stamp="0001")
    assert list(tmp_path.iterdir()) == []
