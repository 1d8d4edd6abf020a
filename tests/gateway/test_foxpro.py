"""The FoxPro adapter against real files: the public fixtures and tables written here."""

from __future__ import annotations

import datetime as dt
import os
import struct
from decimal import Decimal
from pathlib import Path

import dbf
import pytest

from gateway.errors import SourceError
from gateway.ingest.base import FAULTS_KEY, PROBLEM_KEY
from gateway.ingest.dbf import read_dbf
from gateway.ingest.dbf_header import read_header
from gateway.ingest.foxpro import FoxProAdapter

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dbf-public"
ALL_FIXTURES = sorted(p for p in FIXTURES.rglob("*") if p.is_file())

# Files refused with the default encoding (cp1252), and a word their reason must contain.
REFUSED = {
    "README.md": "not a DBF",
    "LICENSE.infused-dbf": "not a DBF",
    "dbase_30.fpt": "not a DBF",
    "dbase_83.dbt": "not a DBF",
    "dbase_8b.dbt": "not a DBF",
    "dbase_f5.fpt": "not a DBF",
    "calls.FPT": "not a DBF",
    "contacts.FPT": "not a DBF",
    "FOXPRO-DB-TEST.DCT": "not a DBF",
    "dbase_02.dbf": "not supported",
    "dbase_8c.dbf": "not supported",
    "dbase_83_missing_memo.dbf": "memo file dbase_83_missing_memo.dbt is missing",
    "dbase_03_cyrillic.dbf": "field names: byte 0x90 cannot be decoded as cp1252; likely utf-8",
}
# Files read with dirt in them: (a record that carries a fault, its field, words of its reason).
FAULTED = {
    "dbase_f5.dbf": (258, "DRIB", "cannot be decoded as cp1252"),
}


def _read_all(path: Path, encoding: str = "cp1252") -> tuple[list, dict, list]:
    export = read_dbf(path, encoding=encoding)
    rows = list(export.rows)
    return rows, export.counters, export.problems


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=[p.name for p in ALL_FIXTURES])
def test_every_public_fixture_is_read_fully_or_refused_in_one_line(path: Path) -> None:
    try:
        rows, counters, _ = _read_all(path)
    except SourceError as exc:
        message = str(exc)
        assert "\n" not in message
        assert path.name in message
        assert path.name in REFUSED, f"unexpectedly refused: {message}"
        assert REFUSED[path.name] in message
    else:
        assert path.name not in REFUSED, "expected a refusal"
        faulted = {r.row: r.values[FAULTS_KEY] for r in rows if FAULTS_KEY in r.values}
        if path.name in FAULTED:
            row, field, words = FAULTED[path.name]
            assert row in faulted
            assert field in [f[0] for f in faulted[row]] if field else faulted[row]
            assert all(words in f[2] for f in faulted[row])
        else:
            assert not faulted
        header = read_header(path)
        assert len(rows) + counters["deleted"] == header.record_count
        numbers = [r.row for r in rows]
        assert numbers == sorted(set(numbers))
        assert all(1 <= n <= header.record_count for n in numbers)


def test_refused_fixtures_read_with_the_right_configured_encoding() -> None:
    rows, _, problems = _read_all(FIXTURES / "dbase_f5.dbf", encoding="cp850")
    assert len(rows) == 975
    assert rows[0].values["COMN"] == "baix penedès"
    rows, _, problems = _read_all(FIXTURES / "dbase_03_cyrillic.dbf", encoding="utf-8")
    assert rows[0].values["ПЛОЩА"] == Decimal("36.30")
    assert any("unknown code page mark 0xf0" in p for p in problems)


def test_code_page_mark_wins_over_configured_encoding() -> None:
    rows, _, _ = _read_all(FIXTURES / "cp1251.dbf", encoding="cp437")
    assert rows[0].values["NAME"] == "амбулаторно-поликлиническое"


def test_memo_files_fpt_and_dbt_are_read() -> None:
    rows, _, _ = _read_all(FIXTURES / "dbase_83.dbf")
    assert rows[0].values["DESC"].startswith("Our Original assortment")
    rows, _, _ = _read_all(FIXTURES / "foxprodb" / "calls.dbf")
    assert rows[0].values["NOTES"].startswith("Nancy told me")
    assert rows[0].values["CALL_DATE"] == dt.datetime(1994, 11, 21, 13, 35, 39)


def test_fingerprint_covers_the_memo_file(tmp_path: Path) -> None:
    for name in ("dbase_83.dbf", "dbase_83.dbt"):
        (tmp_path / name).write_bytes((FIXTURES / name).read_bytes())
    before = read_dbf(tmp_path / "dbase_83.dbf").fingerprint
    memo = tmp_path / "dbase_83.dbt"
    memo.write_bytes(memo.read_bytes() + b"x")
    assert read_dbf(tmp_path / "dbase_83.dbf").fingerprint != before


# --------------------------------------------------------------------------- hand-made tables


def _vfp_table(
    path: Path,
    fields: list[tuple[str, str, int, int, int]],
    records: list[bytes],
    *,
    codepage: int = 0x03,
    version: int = 0x30,
    count: int | None = None,
) -> Path:
    """Write a VFP table byte by byte. fields: (name, type, length, decimals, flags)."""
    header_len = 32 + 32 * len(fields) + 1 + 263
    record_len = 1 + sum(f[2] for f in fields)
    out = bytearray(
        struct.pack(
            "<BBBBLHH16sBBH",
            version, 124, 5, 1, len(records) if count is None else count,
            header_len, record_len, b"", 0, codepage, 0,
        )
    )  # fmt: skip
    offset = 1
    for name, ftype, length, decimals, flags in fields:
        out += struct.pack(
            "<11scLBBB13s", name.encode(), ftype.encode(), offset, length, decimals, flags, b""
        )
        offset += length
    out += b"\r" + b"\0" * 263
    for rec in records:
        assert len(rec) == record_len
        out += rec
    out += b"\x1a"
    path.write_bytes(bytes(out))
    return path


NULLFLAGS = ("_NullFlags", "0", 1, 0, 0x05)


def test_nullflags_make_nullable_fields_none_and_are_not_exposed(tmp_path: Path) -> None:
    fields = [
        ("NAME", "C", 5, 0, 0x02),  # null bit 0
        ("CODE", "V", 6, 0, 0x02),  # varlength bit 1, null bit 2
        ("QTY", "I", 4, 0, 0x02),  # null bit 3
        ("PLAIN", "C", 3, 0, 0x00),  # no bit
        NULLFLAGS,
    ]
    i0 = struct.pack("<i", 0)
    records = [
        b" " + b"Anna " + b"ABCDEF" + struct.pack("<i", 7) + b"xyz" + bytes([0b0000]),
        b" " + b"     " + b"AB\0\0\0\x02" + i0 + b"   " + bytes([0b0011]),
        b" " + b"Bob  " + b"\0" * 6 + i0 + b"abc" + bytes([0b1110]),
    ]
    rows, _, _ = _read_all(_vfp_table(tmp_path / "n.dbf", fields, records))
    assert [r.values for r in rows] == [
        {"NAME": "Anna", "CODE": "ABCDEF", "QTY": 7, "PLAIN": "xyz"},
        {"NAME": None, "CODE": "AB", "QTY": 0, "PLAIN": ""},
        {"NAME": "Bob", "CODE": None, "QTY": None, "PLAIN": "abc"},
    ]


def test_nullflags_written_by_the_dbf_package_read_back_as_none(tmp_path: Path) -> None:
    path = tmp_path / "orders.dbf"
    table = dbf.Table(str(path), "ID C(4); ETA T NULL; KG N(6,1) NULL", dbf_type="vfp")
    table.open(dbf.READ_WRITE)
    table.append({"id": "A1", "eta": dt.datetime(2024, 5, 1, 8, 30), "kg": 12.5})
    table.append({"id": "A2", "eta": dbf.Null, "kg": dbf.Null})
    table.close()
    rows, _, _ = _read_all(path)
    assert rows[0].values == {
        "ID": "A1",
        "ETA": dt.datetime(2024, 5, 1, 8, 30),
        "KG": Decimal("12.5"),
    }
    assert rows[1].values == {"ID": "A2", "ETA": None, "KG": None}


def test_deleted_records_are_skipped_counted_and_keep_physical_row_numbers(
    tmp_path: Path,
) -> None:
    fields = [("ID", "C", 2, 0, 0)]
    records = [b" r1", b"*r2", b" r3", b"*r4", b" r5"]
    export = read_dbf(_vfp_table(tmp_path / "d.dbf", fields, records))
    rows = list(export.rows)
    assert [(r.row, r.values["ID"]) for r in rows] == [(1, "r1"), (3, "r3"), (5, "r5")]
    assert export.counters["deleted"] == 2


def test_cp437_and_cp1252_text_follow_the_code_page_mark(tmp_path: Path) -> None:
    fields = [("CITY", "C", 8, 0, 0)]
    text = "Köpenick"
    p437 = _vfp_table(tmp_path / "a.dbf", fields, [b" " + text.encode("cp437")], codepage=0x01)
    p1252 = _vfp_table(tmp_path / "b.dbf", fields, [b" " + text.encode("cp1252")], codepage=0x03)
    assert _read_all(p437)[0][0].values["CITY"] == text
    assert _read_all(p1252)[0][0].values["CITY"] == text
    assert read_header(p437).encoding == "cp437"


def test_file_without_code_page_mark_uses_configured_encoding(tmp_path: Path) -> None:
    fields = [("CITY", "C", 8, 0, 0)]
    path = _vfp_table(tmp_path / "c.dbf", fields, [b" " + "Köpenick".encode("cp850")], codepage=0)
    assert _read_all(path, encoding="cp850")[0][0].values["CITY"] == "Köpenick"
    header = read_header(path, encoding="cp850")
    assert (header.encoding, header.encoding_source) == ("cp850", "configured")


def test_undecodable_byte_faults_its_row_with_field_hex_and_reason(tmp_path: Path) -> None:
    fields = [("ID", "C", 2, 0, 0), ("CITY", "C", 3, 0, 0)]
    path = _vfp_table(tmp_path / "bad.dbf", fields, [b" okabc", b" ok\x81bc", b" k3xyz"],
                      codepage=0)
    rows, _, _ = _read_all(path)
    assert [r.row for r in rows] == [1, 2, 3]
    assert rows[1].values[FAULTS_KEY] == [["CITY", "81 62 63",
                                           "CITY: byte 0x81 cannot be decoded as cp1252"]]
    assert rows[1].values["ID"] == "ok" and "CITY" not in rows[1].values
    assert PROBLEM_KEY not in rows[0].values and rows[2].values["CITY"] == "xyz"


@pytest.mark.parametrize(
    ("ftype", "length", "dirt", "why"),
    [
        ("N", 8, b"     N/A", "invalid number"),
        ("F", 8, b"   ab.c ", "could not convert"),
        ("N", 8, b"     NaN", "invalid number"),
        ("D", 8, b"20x4-1-9", "invalid date"),
        ("L", 1, b"X", "Illegal value for logical"),
        ("T", 8, struct.pack("<LL", 0xFFFFFFF0, 5), ""),
        ("C", 4, b"a\x90bc", "byte 0x90 cannot be decoded as cp1252"),
    ],
)
def test_dirt_in_each_field_type_faults_one_row_and_reads_the_rest(
    tmp_path: Path, ftype: str, length: int, dirt: bytes, why: str
) -> None:
    fields = [("ID", "C", 2, 0, 0), ("VAL", ftype, length, 0, 0)]
    good = {"N": b"      12", "F": b"   1.500", "D": b"20240229", "L": b"T",
            "T": struct.pack("<LL", 2460370, 3600_000), "C": b"abcd"}[ftype]
    path = _vfp_table(tmp_path / "dirt.dbf", fields, [b" a1" + good, b" a2" + dirt,
                                                      b" a3" + good], codepage=0)
    rows, _, _ = _read_all(path)
    assert [r.values["ID"] for r in rows] == ["a1", "a2", "a3"]
    assert FAULTS_KEY not in rows[0].values and FAULTS_KEY not in rows[2].values
    ((field, raw, reason),) = rows[1].values[FAULTS_KEY]
    assert (field, raw) == ("VAL", dirt.hex(" "))
    assert reason.startswith("VAL: ") and why in reason


def test_memo_pointer_past_the_memo_file_faults_its_row(tmp_path: Path) -> None:
    path = tmp_path / "memo.dbf"
    table = dbf.Table(str(path), "ID C(2); M1 M", dbf_type="vfp", codepage="cp1252")
    table.open(dbf.READ_WRITE)
    for i in range(3):
        table.append({"id": f"m{i}", "m1": f"memo {i}"})
    table.close()
    header = read_header(path)
    data = bytearray(path.read_bytes())
    offset = header.header_length + header.record_length + header.fields[1].offset
    data[offset : offset + 4] = struct.pack("<I", 10_000_000)
    path.write_bytes(bytes(data))
    rows, _, _ = _read_all(path)
    assert [r.values["ID"] for r in rows] == ["m0", "m1", "m2"]
    assert rows[0].values["M1"] == "memo 0" and rows[2].values["M1"] == "memo 2"
    assert [f[0] for f in rows[1].values[FAULTS_KEY]] == ["M1"]


def test_every_listed_type_decodes_to_python_values(tmp_path: Path) -> None:
    path = tmp_path / "types.dbf"
    spec = "C1 C(6); N0 N(5,0); N2 N(8,2); F1 F(8,3); I1 I; B1 B; Y1 Y; D1 D; T1 T; L1 L; M1 M"
    table = dbf.Table(str(path), spec, dbf_type="vfp", codepage="cp1252")
    table.open(dbf.READ_WRITE)
    table.append(
        {
            "c1": "Straße", "n0": 42, "n2": Decimal("12.34"), "f1": 1.5, "i1": -7, "b1": 2.25,
            "y1": Decimal("19.9900"), "d1": dt.date(2024, 2, 29),
            "t1": dt.datetime(2024, 2, 29, 23, 59, 58), "l1": True, "m1": "a memo",
        }
    )  # fmt: skip
    table.close()
    (row,) = _read_all(path)[0]
    values = row.values
    assert values == {
        "C1": "Straße", "N0": 42, "N2": Decimal("12.34"), "F1": 1.5, "I1": -7, "B1": 2.25,
        "Y1": Decimal("19.99"), "D1": dt.date(2024, 2, 29),
        "T1": dt.datetime(2024, 2, 29, 23, 59, 58), "L1": True, "M1": "a memo",
    }  # fmt: skip
    assert isinstance(values["N0"], int) and isinstance(values["N2"], Decimal)
    assert values["T1"].tzinfo is None


def test_unknown_field_type_is_skipped_with_a_problem_note(tmp_path: Path) -> None:
    fields = [("ID", "C", 2, 0, 0), ("ODD", "X", 3, 0, 0)]
    export = read_dbf(_vfp_table(tmp_path / "x.dbf", fields, [b" a1???"]))
    assert [r.values for r in export.rows] == [{"ID": "a1"}]
    assert any("ODD" in p and "unknown type" in p for p in export.problems)


def test_truncated_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    fields = [("ID", "C", 10, 0, 0)]
    path = _vfp_table(tmp_path / "t.dbf", fields, [b" " + b"x" * 10] * 5)
    path.write_bytes(path.read_bytes()[:-25])
    with pytest.raises(SourceError, match=r"t\.dbf: file is truncated"):
        read_dbf(path)


def test_header_cut_short_and_garbage_are_refused(tmp_path: Path) -> None:
    short = tmp_path / "short.dbf"
    short.write_bytes(b"\x30\x7c\x05")
    with pytest.raises(SourceError, match=r"short\.dbf: not a DBF"):
        read_dbf(short)
    garbage = tmp_path / "garbage.dbf"
    garbage.write_bytes(bytes([0x30]) + os.urandom(20) + b"\xff" * 200)
    with pytest.raises(SourceError, match=r"garbage\.dbf"):
        list(read_dbf(garbage).rows)


def test_missing_file_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"nope\.dbf: file not found"):
        read_dbf(tmp_path / "nope.dbf")


def test_adapter_yields_drops_oldest_first(tmp_path: Path) -> None:
    fields = [("ID", "C", 2, 0, 0)]
    new = _vfp_table(tmp_path / "a_new.dbf", fields, [b" n1"])
    old = _vfp_table(tmp_path / "b_old.dbf", fields, [b" o1"])
    os.utime(old, (1_000_000, 1_000_000))
    os.utime(new, (2_000_000, 2_000_000))
    (tmp_path / "notes.txt").write_text("not a table")
    adapter = FoxProAdapter("legacy", str(tmp_path / "*"), "cp1252")
    exports = list(adapter.exports())
    assert [Path(e.location).name for e in exports] == ["b_old.dbf", "a_new.dbf"]
    for export in exports:
        adapter.done(export)
    fixed = FoxProAdapter("legacy", tmp_path / "a_new.dbf", "cp1252")
    assert [r.values for e in fixed.exports() for r in e.rows] == [{"ID": "n1"}]
