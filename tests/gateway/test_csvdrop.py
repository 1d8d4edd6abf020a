"""CSV drops read from real files in tmp_path; time is a fake clock, mtimes are set with utime."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from gateway.errors import NotReady, SourceError
from gateway.ingest.base import FAULTS_KEY, Export
from gateway.ingest.csvdrop import EXTRA_KEY, PROBLEM_KEY, CsvDropAdapter

NOW = 1_800_000_000.0


def write(folder: Path, name: str, content: str | bytes, *, age: float = 60.0) -> Path:
    path = folder / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    mtime_ns = int((NOW - age) * 1e9)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def adapter(folder: Path, **options: object) -> CsvDropAdapter:
    return CsvDropAdapter("legacy", folder, clock=lambda: NOW, **options)  # type: ignore[arg-type]


def ready(csv: CsvDropAdapter) -> list[Export]:
    """Exports of a second call: the first only records sizes and mtimes."""
    list(csv.exports())
    return list(csv.exports())


def test_a_drop_seen_for_the_first_time_is_ready_once_older_than_settle_seconds(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "orders.csv", "order_id,status\nA1,planned\n", age=60.0)
    young = write(tmp_path, "young.csv", "order_id,status\nA2,planned\n", age=1.0)
    csv = adapter(tmp_path, settle_seconds=30.0)
    assert [e.location for e in csv.exports()] == [str(path)]
    assert csv.skipped_not_ready == [str(young)]


def test_a_drop_that_changed_since_the_last_look_is_not_ready(tmp_path: Path) -> None:
    path = write(tmp_path, "orders.csv", "order_id\nA1\n", age=60.0)
    csv = adapter(tmp_path, settle_seconds=2.0)
    list(csv.exports())
    write(tmp_path, "orders.csv", "order_id\nA1\nA2\n", age=50.0)
    assert list(csv.exports()) == []
    assert csv.skipped_not_ready == [str(path)]


def test_a_settled_drop_is_read_on_the_next_call(tmp_path: Path) -> None:
    path = write(tmp_path, "orders.csv", "order_id,status\nA1,planned\n")
    csv = adapter(tmp_path)
    (export,) = ready(csv)
    assert export.location == str(path)
    assert csv.skipped_not_ready == []
    assert [(r.row, dict(r.values)) for r in export.rows] == [
        (1, {"order_id": "A1", "status": "planned"})
    ]


def test_a_drop_modified_within_settle_seconds_is_not_ready(tmp_path: Path) -> None:
    path = write(tmp_path, "orders.csv", "order_id\nA1\n", age=1.0)
    csv = adapter(tmp_path, settle_seconds=2.0)
    assert ready(csv) == []
    assert csv.skipped_not_ready == [str(path)]


def test_a_drop_that_grew_since_the_last_call_is_not_ready_until_it_settles(
    tmp_path: Path,
) -> None:
    write(tmp_path, "orders.csv", "order_id\nA1\n")
    csv = adapter(tmp_path)
    list(csv.exports())
    write(tmp_path, "orders.csv", "order_id\nA1\nA2\n")
    assert list(csv.exports()) == []
    (export,) = list(csv.exports())
    assert [r.values["order_id"] for r in export.rows] == ["A1", "A2"]


def test_with_a_done_marker_only_the_marker_makes_a_drop_ready(tmp_path: Path) -> None:
    path = write(tmp_path, "orders.csv", "order_id\nA1\n", age=3600)
    csv = adapter(tmp_path, done_marker=".done")
    assert ready(csv) == []
    assert csv.skipped_not_ready == [str(path)]
    write(tmp_path, "orders.csv.done", "")
    fresh = adapter(tmp_path, done_marker=".done")
    (export,) = list(fresh.exports())  # no settle wait: the marker says it is complete
    assert export.location == str(path)


def test_drops_are_yielded_oldest_first(tmp_path: Path) -> None:
    write(tmp_path, "b.csv", "order_id\nB\n", age=30)
    write(tmp_path, "a.csv", "order_id\nA\n", age=10)
    write(tmp_path, "c.csv", "order_id\nC\n", age=50)
    names = [Path(e.location).name for e in ready(adapter(tmp_path))]
    assert names == ["c.csv", "b.csv", "a.csv"]


def test_fingerprint_is_the_sha256_of_the_bytes(tmp_path: Path) -> None:
    content = b"order_id\nA1\n"
    write(tmp_path, "orders.csv", content)
    (export,) = ready(adapter(tmp_path))
    assert export.fingerprint == hashlib.sha256(content).hexdigest()


def test_row_numbers_count_data_records_after_the_header_including_blank_lines(
    tmp_path: Path,
) -> None:
    write(tmp_path, "orders.csv", 'order_id,note\nA1,"two\nlines"\n\nA2,x\n')
    (export,) = ready(adapter(tmp_path))
    rows = [(r.row, r.values["order_id"], r.values["note"]) for r in export.rows]
    assert rows == [(1, "A1", "two\nlines"), (3, "A2", "x")]
    assert export.counters == {"rows": 2, "blank_lines": 1, "malformed_rows": 0}


def test_a_row_with_too_few_fields_is_kept_with_a_problem_for_quarantine(tmp_path: Path) -> None:
    write(tmp_path, "orders.csv", "order_id,status,driver\nA1,planned\nA2,planned,d7\n")
    (export,) = ready(adapter(tmp_path))
    first, second = list(export.rows)
    assert first.row == 1
    assert dict(first.values) == {
        "order_id": "A1",
        "status": "planned",
        PROBLEM_KEY: "row has 2 fields, header has 3",
    }
    assert PROBLEM_KEY not in second.values
    assert export.counters["malformed_rows"] == 1


def test_a_row_with_too_many_fields_keeps_the_extra_values(tmp_path: Path) -> None:
    write(tmp_path, "orders.csv", "order_id,status\nA1,planned,oops,more\n")
    (export,) = ready(adapter(tmp_path))
    (row,) = list(export.rows)
    assert row.values[PROBLEM_KEY] == "row has 4 fields, header has 2"
    assert row.values[EXTRA_KEY] == ["oops", "more"]
    assert row.values["status"] == "planned"


def test_undecodable_bytes_quarantine_their_row_with_field_hex_and_reason(
    tmp_path: Path,
) -> None:
    write(tmp_path, "orders.csv", b"order_id,note\nA1,ok\nA2,caf\xe9\nA3,fine\n")
    (export,) = ready(adapter(tmp_path))
    rows = list(export.rows)
    assert [r.row for r in rows] == [1, 2, 3]
    assert rows[1].values[FAULTS_KEY] == [
        ["note", "63 61 66 e9", "note: byte 0xe9 cannot be decoded as utf-8"]]
    assert rows[1].values["order_id"] == "A2" and "note" not in rows[1].values
    assert FAULTS_KEY not in rows[2].values


@pytest.mark.parametrize(("bom", "encoding", "name"), [
    (b"\xef\xbb\xbf", "utf-8", "UTF-8"),
    (b"\xff\xfe", "utf-16-le", "UTF-16 LE"),
])
def test_a_byte_order_mark_is_detected_named_and_decides_the_encoding(
    tmp_path: Path, bom: bytes, encoding: str, name: str
) -> None:
    text = "order_id,note\nA1,Köln\n"
    write(tmp_path, "orders.csv", bom + text.encode(encoding))
    (export,) = ready(adapter(tmp_path, encoding="cp1252"))
    assert [dict(r.values) for r in export.rows] == [{"order_id": "A1", "note": "Köln"}]
    assert export.problems == [f"orders.csv: starts with a {name} byte order mark; read as "
                               f"{'utf-8-sig' if name == 'UTF-8' else 'utf-16'}, not the "
                               "configured cp1252"]


def test_a_utf8_bom_under_a_configured_utf8_is_no_problem(tmp_path: Path) -> None:
    write(tmp_path, "orders.csv", b"\xef\xbb\xbforder_id\nA1\n")
    (export,) = ready(adapter(tmp_path, encoding="utf-8"))
    assert [dict(r.values) for r in export.rows] == [{"order_id": "A1"}]
    assert export.problems == []


def test_a_configured_encoding_and_delimiter_are_used(tmp_path: Path) -> None:
    write(tmp_path, "orders.csv", "order_id;note\nA1;café\n".encode("cp1252"))
    (export,) = ready(adapter(tmp_path, encoding="cp1252", delimiter=";"))
    assert [dict(r.values) for r in export.rows] == [{"order_id": "A1", "note": "café"}]


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    write(tmp_path, "orders.csv", "\ufefforder_id\nA1\n".encode())
    (export,) = ready(adapter(tmp_path))
    assert [dict(r.values) for r in export.rows] == [{"order_id": "A1"}]


@pytest.mark.parametrize("content", [b"", b"\n\n"])
def test_an_empty_file_or_missing_header_is_a_source_error(tmp_path: Path, content: bytes) -> None:
    write(tmp_path, "orders.csv", content)
    (export,) = ready(adapter(tmp_path))
    with pytest.raises(SourceError, match="empty file or missing header"):
        list(export.rows)


def test_a_header_only_file_has_no_rows(tmp_path: Path) -> None:
    write(tmp_path, "orders.csv", "order_id,status\n")
    (export,) = ready(adapter(tmp_path))
    assert list(export.rows) == []


def test_duplicate_header_columns_are_a_source_error(tmp_path: Path) -> None:
    write(tmp_path, "orders.csv", "order_id,status,status\nA1,a,b\n")
    (export,) = ready(adapter(tmp_path))
    with pytest.raises(SourceError, match="duplicate column"):
        list(export.rows)


def test_a_drop_that_changes_while_being_read_raises_not_ready_for_that_export_only(
    tmp_path: Path,
) -> None:
    write(tmp_path, "first.csv", "order_id\nA1\n", age=60)
    second = write(tmp_path, "second.csv", "order_id\nB1\n", age=30)
    csv = adapter(tmp_path)
    list(csv.exports())
    exports = csv.exports()
    first_export = next(exports)
    with second.open("ab") as f:  # the legacy system appends after the listing
        f.write(b"B2\n")
    second_export = next(exports)
    assert [r.values["order_id"] for r in first_export.rows] == ["A1"]
    with pytest.raises(SourceError, match="file changed while being read") as caught:
        list(second_export.rows)
    assert isinstance(caught.value, NotReady)
    assert str(second) in str(caught.value)


def test_a_drop_removed_between_listing_and_reading_is_skipped(tmp_path: Path) -> None:
    write(tmp_path, "first.csv", "order_id\nA1\n", age=60)
    second = write(tmp_path, "second.csv", "order_id\nB1\n", age=30)
    csv = adapter(tmp_path)
    list(csv.exports())
    exports = csv.exports()
    next(exports)
    second.unlink()
    assert list(exports) == []


def test_done_moves_the_drop_and_its_marker_into_processed(tmp_path: Path) -> None:
    write(tmp_path, "orders.csv", "order_id\nA1\n")
    write(tmp_path, "orders.csv.done", "")
    csv = adapter(tmp_path, done_marker=".done")
    (export,) = list(csv.exports())
    list(export.rows)
    csv.done(export)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["processed"]
    processed = tmp_path / "processed"
    assert sorted(p.name for p in processed.iterdir()) == ["orders.csv", "orders.csv.done"]
    assert list(csv.exports()) == []


def test_done_keeps_an_earlier_processed_drop_of_the_same_name(tmp_path: Path) -> None:
    csv = adapter(tmp_path)
    for day in ("A1", "A2"):
        write(tmp_path, "orders.csv", f"order_id\n{day}\n")
        (export,) = ready(csv)
        csv.done(export)
    processed = tmp_path / "processed"
    assert sorted(p.name for p in processed.iterdir()) == ["orders.1.csv", "orders.csv"]
    assert (processed / "orders.1.csv").read_text() == "order_id\nA2\n"


def test_without_archive_a_done_drop_is_not_yielded_again_until_its_bytes_change(
    tmp_path: Path,
) -> None:
    write(tmp_path, "orders.csv", "order_id\nA1\n")
    csv = adapter(tmp_path, archive=False)
    (export,) = ready(csv)
    csv.done(export)
    assert (tmp_path / "orders.csv").exists()
    assert list(csv.exports()) == []
    write(tmp_path, "orders.csv", "order_id\nA1\nA2\n")
    (changed,) = ready(csv)
    assert changed.fingerprint != export.fingerprint


def test_files_not_matching_the_pattern_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, "orders.csv", "order_id\nA1\n")
    write(tmp_path, "orders.txt", "order_id\nA1\n")
    (tmp_path / "processed").mkdir()
    assert [Path(e.location).name for e in ready(adapter(tmp_path))] == ["orders.csv"]
