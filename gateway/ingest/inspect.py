"""What a DBF or CSV export holds, as a JSON-able dict, to help an operator write a mapping.

``inspect_file(path)`` is what ``crossdock gateway inspect FILE --json`` prints. For a DBF:
version (hex and name), code page mark and the encoding used, fields, record and deleted
counts, the memo file and whether it is present, the first decoded rows. For a CSV: the
delimiter and encoding guessed (or given), the header, the row count, the first rows.
Anything unreadable raises a one-line ``SourceError``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import Any

from gateway.errors import SourceError
from gateway.ingest.dbf import read_dbf
from gateway.ingest.dbf_header import DEFAULT_ENCODING, read_header, scan_deleted

__all__ = ["inspect_file"]

_CSV_SUFFIXES = frozenset({".csv", ".txt", ".tsv"})
_CSV_ENCODINGS = ("utf-8-sig", "cp1252")
_SNIFF_BYTES = 64 * 1024


def _jsonable(value: object) -> object:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def _inspect_dbf(path: Path, encoding: str | None, sample: int) -> dict[str, Any]:
    header = read_header(path, encoding=encoding or DEFAULT_ENCODING, require_memo=False)
    rows: list[dict[str, Any]] = []
    problems = list(header.problems)
    if header.memo_name and header.memo_path is None:
        problems.append(f"{path.name}: memo file {header.memo_name} is missing; no rows shown")
    else:
        export = read_dbf(path, encoding=encoding or DEFAULT_ENCODING)
        rows = [
            {"row": r.row, "values": {k: _jsonable(v) for k, v in r.values.items()}}
            for r in islice(export.rows, sample)
        ]
        close = getattr(export.rows, "close", None)
        if close is not None:
            close()
        problems = list(export.problems)
    return {
        "kind": "dbf",
        "path": str(path),
        "version": f"0x{header.version:02x}",
        "version_name": header.version_name,
        "codepage_mark": f"0x{header.codepage_mark:02x}",
        "encoding": header.encoding,
        "encoding_source": header.encoding_source,
        "last_update": header.last_update.isoformat() if header.last_update else None,
        "fields": [
            {
                "name": f.name,
                "type": f.type,
                "length": f.length,
                "decimals": f.decimals,
                "nullable": f.nullable,
            }
            for f in header.fields
        ],
        "record_count": header.record_count,
        "deleted_count": scan_deleted(header),
        "memo_file": header.memo_name,
        "memo_present": header.memo_path is not None if header.memo_name else None,
        "problems": problems,
        "rows": rows,
    }


def _decode_csv(path: Path, encoding: str | None) -> tuple[str, str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"{path.name}: cannot read ({exc.strerror or exc})") from None
    candidates = (encoding,) if encoding else _CSV_ENCODINGS
    for candidate in candidates:
        try:
            return data.decode(candidate), candidate
        except UnicodeDecodeError as exc:
            last = exc
        except LookupError:
            raise SourceError(f"{path.name}: unknown encoding {candidate!r}") from None
    raise SourceError(
        f"{path.name}: byte 0x{last.object[last.start]:02x} at offset {last.start} cannot be "
        f"decoded as {candidates[-1]}; pass --encoding"
    )


def _inspect_csv(path: Path, encoding: str | None, sample: int) -> dict[str, Any]:
    text, used = _decode_csv(path, encoding)
    try:
        dialect = csv.Sniffer().sniff(text[:_SNIFF_BYTES], delimiters=",;\t|")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ","
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        header = next(reader, [])
        rows: list[dict[str, str]] = []
        count = 0
        for record in reader:
            if not any(cell.strip() for cell in record):
                continue
            count += 1
            if len(rows) < sample:
                rows.append(dict(zip(header, record, strict=False)))
    except csv.Error as exc:
        raise SourceError(f"{path.name} line {reader.line_num}: {exc}") from None
    return {
        "kind": "csv",
        "path": str(path),
        "encoding": used,
        "encoding_source": "configured" if encoding else "guessed",
        "delimiter": delimiter,
        "header": header,
        "row_count": count,
        "rows": rows,
    }


def _looks_like_dbf(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            first = fh.read(1)
    except OSError as exc:
        raise SourceError(f"{path.name}: cannot read ({exc.strerror or exc})") from None
    return first in (b"\x03", b"\x30", b"\x31", b"\x32", b"\x43", b"\x63", b"\x83", b"\x8b",
                     b"\xcb", b"\xf5", b"\xfb", b"\x02", b"\x04", b"\x8c")  # fmt: skip


def inspect_file(
    path: str | Path, *, encoding: str | None = None, sample: int = 5
) -> dict[str, Any]:
    """Describe a DBF or CSV export (see module docstring); JSON-able."""
    p = Path(path)
    if not p.is_file():
        raise SourceError(f"{p.name}: file not found ({p})")
    suffix = p.suffix.lower()
    if suffix in (".dbf", ".dbc") or (suffix not in _CSV_SUFFIXES and _looks_like_dbf(p)):
        return _inspect_dbf(p, encoding, sample)
    return _inspect_csv(p, encoding, sample)
