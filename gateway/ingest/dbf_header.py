"""The header side of the DBF reader: the header and field
descriptors (``read_header``, ``DbfHeader``), the field value rules (``Parser``), memo files
found, a table opened (``open_table``), deleted records counted (``scan_deleted``), and every
dbfread / OS error translated in one place (``translate_errors``) into a one-line
``SourceError``. The records themselves are read by ``gateway.ingest.dbf``; the code pages
(Mazovia included) are ``gateway.ingest.codepages``."""

from __future__ import annotations

import codecs
import datetime as _dt
import math
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from dbfread import DBF
from dbfread.exceptions import DBFNotFound, MissingMemoFile
from dbfread.field_parser import FieldParser

from gateway.errors import SourceError
from gateway.ingest.codepages import (  # re-exported: the names the reader's callers use
    DEFAULT_ENCODING,
    MAZOVIA,
    MAZOVIA_DECODE,
    encoding_for,
    likely_encoding,
)

__all__ = [
    "CHUNK",
    "DEFAULT_ENCODING",
    "KNOWN_TYPES",
    "MAZOVIA",
    "MAZOVIA_DECODE",
    "DbfField",
    "DbfHeader",
    "Parser",
    "likely_encoding",
    "one_line",
    "open_table",
    "read_header",
    "scan_deleted",
    "source_error",
    "translate_errors",
]

# Version byte -> name. Versions outside this table are refused.
VERSIONS: dict[int, str] = {
    0x03: "FoxBASE+/dBase III PLUS, no memo",
    0x30: "Visual FoxPro",
    0x31: "Visual FoxPro, autoincrement enabled",
    0x32: "Visual FoxPro, Varchar/Varbinary/Blob enabled",
    0x43: "dBase IV SQL table, no memo",
    0x63: "dBase IV SQL system file, no memo",
    0x83: "FoxBASE+/dBase III PLUS, with memo",
    0x8B: "dBase IV, with memo",
    0xCB: "dBase IV SQL table, with memo",
    0xF5: "FoxPro 2.x, with memo",
    0xFB: "FoxBASE",
}
# Recognised, but laid out differently from what dbfread parses: refused with a reason.
_UNSUPPORTED_VERSIONS: dict[int, str] = {
    0x02: "FoxBASE / dBase II",
    0x04: "dBase 7",
    0x8C: "dBase 7, with memo",
}

# Field flags byte (offset 18 of a VFP field descriptor).
_FLAG_SYSTEM = 0x01
_FLAG_NULLABLE = 0x02
_FLAG_BINARY = 0x04
_VFP_VERSIONS = frozenset({0x30, 0x31, 0x32})
_MEMO_TYPES = frozenset("MGPBW")
KNOWN_TYPES = frozenset("CNFIBYDTLMGPVQ0+@O")
CHUNK = 1 << 20


class Parser(FieldParser):  # type: ignore[misc]
    """dbfread's parser with decoding rules of our own for N, Q and unknown types."""

    def field_type_supported(self, field_type: str) -> bool:
        # Unknown types are skipped by the reader with a problem note, not refused.
        return True

    def parseN(self, field: Any, data: bytes) -> int | Decimal | None:
        data = data.strip().strip(b"*")
        if not data:
            return None
        if field.decimal_count == 0:
            try:
                return int(data)
            except ValueError:
                pass
        try:
            number = Decimal(data.replace(b",", b".").decode("ascii"))
        except (InvalidOperation, UnicodeDecodeError):
            raise ValueError(f"invalid number {data!r}") from None
        if not number.is_finite():
            raise ValueError(f"invalid number {data!r}")
        return number

    def parseF(self, field: Any, data: bytes) -> float | None:
        value: float | None = super().parseF(field, data)
        if value is not None and not math.isfinite(value):
            raise ValueError(f"invalid number {data.strip()!r}")
        return value

    def parseQ(self, field: Any, data: bytes) -> bytes:
        return bytes(data)

    def parseW(self, field: Any, data: bytes) -> object:
        return self.parseG(field, data)


# --------------------------------------------------------------------------- header


@dataclass(frozen=True)
class DbfField:
    """One column as the header declares it; ``offset`` is its position in a record."""

    name: str
    type: str
    length: int
    decimals: int
    offset: int
    nullable: bool
    system: bool
    binary: bool


@dataclass(frozen=True)
class DbfHeader:
    """What a table's header says, plus the encoding this reader decodes it with."""

    path: Path
    version: int
    version_name: str
    codepage_mark: int
    encoding: str
    encoding_source: str  # "header" or "configured"
    last_update: _dt.date | None
    record_count: int
    header_length: int
    record_length: int
    fields: tuple[DbfField, ...]  # user fields, without _NullFlags
    nullflags: DbfField | None
    memo_name: str | None  # the memo file the table needs (found or expected), None if none
    memo_path: Path | None  # the memo file found on disk
    problems: tuple[str, ...]
    spare_records: int = 0  # whole records the file holds past the declared count


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


_TRANSLATED = (
    DBFNotFound, MissingMemoFile, OSError, ValueError, struct.error, LookupError,
    ArithmeticError, TypeError, IndexError,
)  # fmt: skip


def source_error(
    path: Path, exc: BaseException, where: str = "", encoding: str = ""
) -> SourceError:
    """The one place where dbfread, OS and parsing errors become a one-line SourceError."""
    if isinstance(exc, SourceError):
        return exc
    if isinstance(exc, DBFNotFound | FileNotFoundError):
        return SourceError(f"{path.name}: file not found ({path})")
    if isinstance(exc, MissingMemoFile):
        return SourceError(f"{path.name}: memo file is missing ({one_line(exc)})")
    if isinstance(exc, UnicodeDecodeError):
        guess = likely_encoding([bytes(exc.object)])
        return SourceError(
            f"{path.name}{where}: byte 0x{exc.object[exc.start]:02x} cannot be decoded as "
            f"{encoding or exc.encoding}; "
            + (f"likely {guess}: set the source's encoding" if guess else
               "set the source's encoding (e.g. cp850, cp437, cp1251)")
        )
    return SourceError(f"{path.name}{where}: {one_line(exc)}")


@contextmanager
def translate_errors(path: Path) -> Iterator[None]:
    """Run a block, turning every library/OS/parsing error into a SourceError."""
    try:
        yield
    except SourceError:
        raise
    except _TRANSLATED as exc:
        raise source_error(path, exc) from None


def _find_memo(dbf_path: Path, version: int) -> tuple[str, Path | None]:
    """The memo file name the table needs and the file found (any case), or None."""
    suffix = dbf_path.suffix.lower()
    if suffix == ".dbc":
        exts = [".dct"]
    elif version in (0x83, 0x8B, 0xCB, 0x03, 0x43, 0x63):
        exts = [".dbt", ".fpt"]
    else:
        exts = [".fpt", ".dbt"]
    expected = dbf_path.stem + (exts[0].upper() if dbf_path.suffix.isupper() else exts[0])
    try:
        siblings = {p.name.lower(): p for p in dbf_path.parent.iterdir()}
    except OSError:
        siblings = {}
    for ext in exts:
        found = siblings.get((dbf_path.stem + ext).lower())
        if found is not None and found.is_file():
            return found.name, found
    return expected, None


def open_table(path: Path, encoding: str, *, require_memo: bool = True) -> tuple[DBF, DbfHeader]:
    """Parse the header with dbfread (after our own sanity checks) and describe it."""
    with translate_errors(path):
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(32)
        if len(head) < 32:
            raise SourceError(f"{path.name}: not a DBF table (only {len(head)} bytes)")
        version = head[0]
        if version in _UNSUPPORTED_VERSIONS:
            raise SourceError(
                f"{path.name}: {_UNSUPPORTED_VERSIONS[version]} tables (version byte "
                f"0x{version:02x}) are not supported"
            )
        if version not in VERSIONS:
            raise SourceError(f"{path.name}: not a DBF table (version byte 0x{version:02x})")
        count, header_len, record_len = struct.unpack("<LHH", head[4:12])
        if header_len < 33 or record_len < 1 or header_len > size:
            raise SourceError(
                f"{path.name}: not a DBF table or header damaged (header length {header_len}, "
                f"record length {record_len}, file size {size})"
            )
        mark = head[29]
        problems: list[str] = []
        known = encoding_for(mark) if mark else None
        if known is not None:
            used, source = known, "header"
        else:
            used, source = encoding, "configured"
            if mark:
                problems.append(
                    f"{path.name}: unknown code page mark 0x{mark:02x}; decoded as {encoding}"
                )
        codecs.lookup(used)
        try:
            table = DBF(
                str(path),
                encoding=used,
                ignorecase=False,
                parserclass=Parser,
                recfactory=None,
                load=False,
                ignore_missing_memofile=True,
            )
        except UnicodeDecodeError as exc:
            raise source_error(path, exc, " field names", used) from None
        fields: list[DbfField] = []
        nullflags: DbfField | None = None
        offset = 1
        for f in table.fields:
            flags = f.reserved1 & 0xFF
            item = DbfField(
                name=f.name,
                type=f.type,
                length=f.length,
                decimals=f.decimal_count,
                offset=offset,
                nullable=bool(flags & _FLAG_NULLABLE),
                system=bool(flags & _FLAG_SYSTEM),
                binary=bool(flags & _FLAG_BINARY),
            )
            offset += f.length
            if f.type == "0" or f.name.upper() == "_NULLFLAGS":
                nullflags = item
            elif item.system:
                problems.append(f"{path.name}: system field {f.name} skipped")
            else:
                fields.append(item)
        if offset > record_len:
            raise SourceError(
                f"{path.name}: header damaged (fields take {offset} bytes, record length is "
                f"{record_len})"
            )
        needed = header_len + count * record_len
        if size < needed:
            raise SourceError(
                f"{path.name}: file is truncated (header declares {count} records of "
                f"{record_len} bytes, file holds {max(size - header_len, 0) // record_len})"
            )
        # more whole records past the declared ones than an end-of-file mark explains: the
        # header lies about the count (a FoxPro job cut short while writing it); reading only
        # what it declares would withdraw the rest, so the export is held as suspect
        spare = (size - needed) // record_len if record_len > 1 else max(0, size - needed - 1)
        if spare:
            problems.append(
                f"{path.name}: header declares {count} records, file holds {count + spare}"
            )
        memo_name: str | None = None
        memo_path: Path | None = None
        if any(f.type in _MEMO_TYPES and not (f.type == "B" and version in _VFP_VERSIONS)
               for f in fields):  # fmt: skip
            memo_name, memo_path = _find_memo(path, version)
            if memo_path is None and require_memo:
                raise SourceError(f"{path.name}: memo file {memo_name} is missing")
        header = DbfHeader(
            path=path,
            version=version,
            version_name=VERSIONS[version],
            codepage_mark=mark,
            encoding=used,
            encoding_source=source,
            last_update=table.date,
            record_count=count,
            header_length=header_len,
            record_length=record_len,
            fields=tuple(fields),
            nullflags=nullflags,
            memo_name=memo_name,
            memo_path=memo_path,
            problems=tuple(problems),
            spare_records=spare,
        )
        return table, header


def read_header(
    path: str | Path, *, encoding: str = DEFAULT_ENCODING, require_memo: bool = True
) -> DbfHeader:
    """Parse a table's header (version, code page, fields, record count, memo file).

    With ``require_memo=False`` a missing memo file is reported (``memo_path`` None) instead
    of refused.
    """
    return open_table(Path(path), encoding, require_memo=require_memo)[1]


def scan_deleted(header: DbfHeader) -> int:
    """Count deleted records by reading only the flag bytes (cheap, for ``inspect``)."""
    path = header.path
    reclen = header.record_length
    per_chunk = max(1, CHUNK // reclen)
    remaining = header.record_count
    deleted = 0
    with translate_errors(path), path.open("rb") as fh:
        fh.seek(header.header_length)
        while remaining > 0:
            n = min(per_chunk, remaining)
            chunk = fh.read(n * reclen)
            deleted += chunk[0::reclen].count(b"*")
            remaining -= n
    return deleted
