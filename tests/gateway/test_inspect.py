"""``inspect_file`` on real DBF and CSV files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.errors import SourceError
from gateway.ingest.inspect import inspect_file

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dbf-public"


def test_dbf_report_names_version_codepage_fields_memo_and_rows() -> None:
    report = inspect_file(FIXTURES / "foxprodb" / "calls.dbf", sample=2)
    json.dumps(report)  # JSON-able as is
    assert report["version"] == "0x30"
    assert report["version_name"] == "Visual FoxPro"
    assert (report["codepage_mark"], report["encoding"]) == ("0x03", "cp1252")
    assert report["fields"][2] == {
        "name": "CALL_DATE", "type": "T", "length": 8, "decimals": 0, "nullable": False,
    }  # fmt: skip
    assert report["record_count"] == 16
    assert report["deleted_count"] == 0
    assert (report["memo_file"], report["memo_present"]) == ("calls.FPT", True)
    assert [r["row"] for r in report["rows"]] == [1, 2]
    assert report["rows"][0]["values"]["CALL_DATE"] == "1994-11-21T13:35:39"


def test_dbf_report_counts_deleted_records() -> None:
    report = inspect_file(FIXTURES / "foxprodb" / "FOXPRO-DB-TEST.DBC", sample=0)
    assert report["record_count"] == 58
    assert report["deleted_count"] == 2


def test_missing_memo_is_reported_not_refused() -> None:
    report = inspect_file(FIXTURES / "dbase_83_missing_memo.dbf")
    assert report["memo_file"] == "dbase_83_missing_memo.dbt"
    assert report["memo_present"] is False
    assert report["rows"] == []


def test_csv_report_guesses_delimiter_and_encoding(tmp_path: Path) -> None:
    path = tmp_path / "drop.csv"
    path.write_bytes("ORDER;CITY\nA1;Köln\nA2;Berlin\n\nA3;Bonn\n".encode("cp1252"))
    report = inspect_file(path, sample=2)
    assert report["delimiter"] == ";"
    assert report["encoding"] == "cp1252"
    assert report["header"] == ["ORDER", "CITY"]
    assert report["row_count"] == 3
    assert report["rows"] == [{"ORDER": "A1", "CITY": "Köln"}, {"ORDER": "A2", "CITY": "Berlin"}]


def test_csv_with_given_encoding_that_does_not_fit_is_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "drop.csv"
    path.write_bytes("A,B\nKöln,1\n".encode("cp1252"))
    with pytest.raises(SourceError, match=r"drop\.csv: byte 0xf6 .* utf-8") as info:
        inspect_file(path, encoding="utf-8")
    assert "\n" not in str(info.value)


def test_unreadable_dbf_and_missing_file_are_source_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not supported"):
        inspect_file(FIXTURES / "dbase_8c.dbf")
    with pytest.raises(SourceError, match="file not found"):
        inspect_file(tmp_path / "missing.dbf")
