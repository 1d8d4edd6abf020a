"""Visual FoxPro / dBase ``.dbf`` adapter, built on dbfread.

dbfread parses the header and the field values; this module adds what a depot's FoxPro export
needs and dbfread does not do:

* physical record numbers (deleted records counted, so ``RawRow.row`` matches FoxPro's
  ``RECNO()``), deleted records skipped and counted in ``Export.counters["deleted"]``;
* the VFP ``_NullFlags`` system column: a nullable field whose null bit is set reads as None
  (not as a blank string), and ``V``/``Q`` fields honour their "varlength" bit; the column
  itself is never exposed;
* code pages: the header's code page mark decides the encoding; a file without a mark (byte 0)
  or with a mark we do not know is decoded with the configured encoding (default cp1252);
  Mazovia (Polish DOS, mark 0x69) is supported;
* memo files: ``.fpt`` (VFP, FoxPro 2), ``.dbt`` (dBase) and ``.dct`` (a ``.dbc`` container's
  memo file); a missing memo file refuses the table, naming the file;
* ``N`` fields decode to ``int`` (no decimals) or ``Decimal``; ``Y`` to ``Decimal``; ``T`` to a
  naive ``datetime``; ``D`` to ``date``; ``L`` to ``bool`` or None; ``M`` to ``str``.

Every dbfread / OS / parsing exception is translated in one place (``_translate``) into a
one-line ``SourceError`` naming the file, and the row and field when there is one.
"""

from __future__ import annotations

import codecs
import datetime as _dt
import functools
import glob
import hashlib
import math
import os
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from dbfread import DBF
from dbfread.codepages import codepages as _DBFREAD_CODEPAGES
from dbfread.exceptions import DBFNotFound, MissingMemoFile
from dbfread.field_parser import FieldParser
from dbfread.memo import (
    VFP_TYPE_MAP,
    BinaryMemo,
    DB3MemoFile,
    DB4MemoFile,
    FakeMemoFile,
    MemoFile,
    VFPMemoFile,
)

from gateway.errors import SourceError
from gateway.ingest.base import FAULTS_KEY, PROBLEM_KEY, Export, RawRow, failed_export

__all__ = [
    "DbfField",
    "DbfHeader",
    "FoxProAdapter",
    "read_dbf",
    "read_header",
    "scan_deleted",
]

DEFAULT_ENCODING = "cp1252"

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

_MAZOVIA = "mazovia"
# Code page marks dbfread's table lacks.
_EXTRA_CODEPAGES: dict[int, str] = {0x69: _MAZOVIA}

# Field flags byte (offset 18 of a VFP field descriptor).
_FLAG_SYSTEM = 0x01
_FLAG_NULLABLE = 0x02
_FLAG_BINARY = 0x04
_VFP_VERSIONS = frozenset({0x30, 0x31, 0x32})
_MEMO_TYPES = frozenset("MGPBW")
_KNOWN_TYPES = frozenset("CNFIBYDTLMGPVQ0+@O")
_CHUNK = 1 << 20


# --------------------------------------------------------------------------- codecs


def _mazovia_table() -> str:
    """cp437 with the Polish letters of the Mazovia code page in place."""
    chars = list(bytes(range(256)).decode("cp437"))
    polish = {
        0x86: "ą", 0x8D: "ć", 0x8F: "Ą", 0x90: "Ę", 0x91: "ę", 0x92: "ł", 0x95: "Ć",
        0x98: "Ś", 0x9C: "Ł", 0x9E: "ś", 0xA0: "Ź", 0xA1: "Ż", 0xA2: "ó", 0xA3: "Ó",
        0xA4: "ń", 0xA5: "Ń", 0xA6: "ź", 0xA7: "ż",
    }  # fmt: skip
    for code, char in polish.items():
        chars[code] = char
    return "".join(chars)


_MAZOVIA_DECODE = _mazovia_table()
_MAZOVIA_ENCODE = codecs.charmap_build(_MAZOVIA_DECODE)


def _mazovia_search(name: str) -> codecs.CodecInfo | None:
    if name != _MAZOVIA:
        return None

    def encode(text: str, errors: str = "strict") -> tuple[bytes, int]:
        return codecs.charmap_encode(text, errors, _MAZOVIA_ENCODE)

    def decode(data: Any, errors: str = "strict") -> tuple[str, int]:
        return codecs.charmap_decode(data, errors, _MAZOVIA_DECODE)

    return codecs.CodecInfo(encode, decode, name=_MAZOVIA)


codecs.register(_mazovia_search)


def _encoding_for(mark: int) -> str | None:
    if mark in _EXTRA_CODEPAGES:
        return _EXTRA_CODEPAGES[mark]
    entry = _DBFREAD_CODEPAGES.get(mark)
    return entry[0] if entry else None


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


_CANDIDATES = ("utf-8", "cp1251", "cp1250", "cp850", "cp437", "cp866", "cp1253", "iso8859-15",
               "cp1252")


def likely_encoding(samples: list[bytes]) -> str | None:
    """The code page the sample bytes most likely are: UTF-8 when they all decode as UTF-8 (its
    multi-byte sequences rarely happen by chance), else the candidate under which they read as
    the most letters. None when no sample has a byte past ASCII."""
    data = b" ".join(samples)
    if data.isascii():
        return None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return "utf-8"
    best, score = None, -1.0
    for name in _CANDIDATES[1:]:
        text = data.decode(name, errors="replace")
        high = [c for c in text if ord(c) > 127]
        letters = sum(c.isalpha() for c in high) / max(1, len(high))
        if letters > score:
            best, score = name, letters
    return best


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


_TRANSLATED = (
    DBFNotFound, MissingMemoFile, OSError, ValueError, struct.error, LookupError,
    ArithmeticError, TypeError, IndexError,
)  # fmt: skip


def _source_error(
    path: Path, exc: BaseException, where: str = "", encoding: str = ""
) -> SourceError:
    """The one place where dbfread, OS and parsing errors become a one-line SourceError."""
    if isinstance(exc, SourceError):
        return exc
    if isinstance(exc, DBFNotFound | FileNotFoundError):
        return SourceError(f"{path.name}: file not found ({path})")
    if isinstance(exc, MissingMemoFile):
        return SourceError(f"{path.name}: memo file is missing ({_one_line(exc)})")
    if isinstance(exc, UnicodeDecodeError):
        guess = likely_encoding([bytes(exc.object)])
        return SourceError(
            f"{path.name}{where}: byte 0x{exc.object[exc.start]:02x} cannot be decoded as "
            f"{encoding or exc.encoding}; "
            + (f"likely {guess}: set the source's encoding" if guess else
               "set the source's encoding (e.g. cp850, cp437, cp1251)")
        )
    return SourceError(f"{path.name}{where}: {_one_line(exc)}")


@contextmanager
def _translate(path: Path) -> Iterator[None]:
    """Run a block, turning every library/OS/parsing error into a SourceError."""
    try:
        yield
    except SourceError:
        raise
    except _TRANSLATED as exc:
        raise _source_error(path, exc) from None


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


def _open_table(path: Path, encoding: str, *, require_memo: bool = True) -> tuple[DBF, DbfHeader]:
    """Parse the header with dbfread (after our own sanity checks) and describe it."""
    with _translate(path):
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
        known = _encoding_for(mark) if mark else None
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
                parserclass=_Parser,
                recfactory=None,
                load=False,
                ignore_missing_memofile=True,
            )
        except UnicodeDecodeError as exc:
            raise _source_error(path, exc, " field names", used) from None
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
    return _open_table(Path(path), encoding, require_memo=require_memo)[1]


def scan_deleted(header: DbfHeader) -> int:
    """Count deleted records by reading only the flag bytes (cheap, for ``inspect``)."""
    path = header.path
    reclen = header.record_length
    per_chunk = max(1, _CHUNK // reclen)
    remaining = header.record_count
    deleted = 0
    with _translate(path), path.open("rb") as fh:
        fh.seek(header.header_length)
        while remaining > 0:
            n = min(per_chunk, remaining)
            chunk = fh.read(n * reclen)
            deleted += chunk[0::reclen].count(b"*")
            remaining -= n
    return deleted


# --------------------------------------------------------------------------- values


class _Parser(FieldParser):  # type: ignore[misc]
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


# --------------------------------------------------------------------------- fast decoders
#
# dbfread's parser costs several Python calls per value (parse -> decode_text -> decode, a
# seek and two reads per memo). The common VFP types get one closure each here, with the same
# results and the same errors (a value that fails goes to ``_salvage`` and its row to
# quarantine); anything else keeps dbfread's parser.

_JULIAN_TO_ORDINAL = 1721425
_LOGICAL: dict[bytes, bool | None] = {
    b"T": True, b"t": True, b"Y": True, b"y": True,
    b"F": False, b"f": False, b"N": False, b"n": False, b"?": None, b" ": None,
}  # fmt: skip
_UNPACK_LL = struct.Struct("<LL").unpack
_UNPACK_MEMO = struct.Struct(">LL").unpack_from
_UNPACK_I = struct.Struct("<I").unpack


class _FastMemo:
    """A VFP ``.fpt`` mapped into memory: a memo is a slice, not a seek and two reads."""

    def __init__(self, mm: Any, blocksize: int, encoding: str) -> None:
        self.mm = mm
        self.blocksize = blocksize
        self.encoding = encoding

    @classmethod
    @contextmanager
    def open(cls, header: DbfHeader) -> Iterator[_FastMemo | None]:
        path = header.memo_path
        if path is None or path.suffix.lower() not in (".fpt", ".dct"):
            yield None
            return
        import mmap

        with path.open("rb") as fh:
            try:
                mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            except (ValueError, OSError):  # empty or unmappable: dbfread's reader does it
                yield None
                return
        try:
            blocksize = int.from_bytes(mm[6:8], "big") if len(mm) >= 8 else 0
            yield cls(mm, blocksize, header.encoding) if blocksize else None
        finally:
            mm.close()

    def reader(self, *, text: bool) -> Callable[[bytes], object]:
        mm, blocksize, encoding = self.mm, self.blocksize, self.encoding
        types = VFP_TYPE_MAP

        def memo(data: bytes) -> object:
            if len(data) == 4:
                index = _UNPACK_I(data)[0]
            else:
                try:
                    index = int(data)
                except ValueError:
                    if data.strip(b" \x00"):
                        raise ValueError(f"Memo index is not an integer: {data!r}") from None
                    return None
            if index <= 0:
                return None
            offset = index * blocksize
            kind, length = _UNPACK_MEMO(mm, offset)
            body = mm[offset + 8 : offset + 8 + length]
            if len(body) != length:
                raise OSError("EOF reached while reading memo")
            if text and kind == 1:
                return body.decode(encoding)
            return types.get(kind, BinaryMemo)(body)

        return memo


def _fast(f: DbfField, fd: Any, func: Callable[[Any, bytes], object], header: DbfHeader,
          fast_memo: _FastMemo | None) -> Callable[[bytes], object]:
    """The decoder of one field: a closure for the common types, else dbfread's parser."""
    encoding = header.encoding
    kind = f.type
    if kind == "C" and not f.binary:
        def text(data: bytes) -> object:
            return data.rstrip(b"\0 ").decode(encoding)

        return text
    if kind == "N" and f.decimals == 0:
        def whole(data: bytes) -> object:
            stripped = data.strip()
            if not stripped:
                return None
            try:
                return int(stripped)
            except ValueError:
                return func(fd, data)

        return whole
    if kind == "N":
        def decimal(data: bytes) -> object:
            stripped = data.strip()
            if not stripped:
                return None
            try:
                number = Decimal(stripped.decode("ascii"))
            except (InvalidOperation, UnicodeDecodeError):
                return func(fd, data)  # '*' padding, a decimal comma, or dirt: its reason
            if not number.is_finite():
                return func(fd, data)
            return number

        return decimal
    if kind == "T":
        fromordinal = _dt.datetime.fromordinal
        delta = _dt.timedelta

        def moment(data: bytes) -> object:
            if not data.strip():
                return None
            day, msec = _UNPACK_LL(data)
            if not day:
                return None
            return fromordinal(day - _JULIAN_TO_ORDINAL) + delta(seconds=msec / 1000)

        return moment
    if kind == "L":
        def logical(data: bytes) -> object:
            try:
                return _LOGICAL[data]
            except KeyError:
                raise ValueError(f"Illegal value for logical field: {data!r}") from None

        return logical
    if kind == "I":
        def integer(data: bytes) -> object:
            return int.from_bytes(data, "little", signed=True)

        return integer
    if kind == "M" and fast_memo is not None:
        return fast_memo.reader(text=not f.binary)
    return functools.partial(func, fd)


def _memo_file(header: DbfHeader) -> MemoFile:
    path = header.memo_path
    if path is None:
        return FakeMemoFile(None)
    suffix = path.suffix.lower()
    if suffix in (".fpt", ".dct"):
        return VFPMemoFile(str(path))
    if header.version == 0x83:
        return DB3MemoFile(str(path))
    return DB4MemoFile(str(path))


def _iter_rows(
    table: DBF, header: DbfHeader, counters: dict[str, int], problems: list[str],
    first: int = 1, last: int | None = None,
) -> Iterator[RawRow]:
    path = header.path
    name = path.name
    counters["deleted"] = 0
    memo = _memo_file(header)
    with memo, _FastMemo.open(header) as fast_memo:
        parser = _Parser(table, memo)
        raw_by_name = {f.name: f for f in table.fields}
        plan: list[tuple[str, Callable[[bytes], object], int, int]] = []
        varfields: list[tuple[str, int, int, int, bool]] = []
        nullable: list[tuple[str, int, int]] = []
        bit = 0
        for f in header.fields:
            if f.type not in _KNOWN_TYPES:
                problems.append(f"{name}: field {f.name} has unknown type {f.type!r}; skipped")
                continue
            start, end = f.offset, f.offset + f.length
            fd = raw_by_name[f.name]
            func = getattr(parser, "parse" + f.type, None)
            if func is None:
                func = parser.parse
            elif f.type == "M" and f.binary:
                func = parser.parseG  # binary memo (NOCPTRANS): raw bytes, not text
            plan.append((f.name, _fast(f, fd, func, header, fast_memo), start, end))
            if header.nullflags is None:
                continue
            if f.type in ("V", "Q"):
                varfields.append((f.name, 1 << bit, start, end, f.type == "V"))
                bit += 1
            if f.nullable:
                nullable.append((f.name, 1 << bit, 0))
                bit += 1
        nf = header.nullflags
        nf_start = nf.offset if nf is not None else 0
        nf_end = nf_start + (nf.length if nf is not None else 0)
        null_mask = 0
        for _, mask, _ in nullable:
            null_mask |= mask
        if nf is not None and bit > 8 * nf.length:
            raise SourceError(f"{name}: _NullFlags holds {8 * nf.length} bits, fields need {bit}")
        decode = parser.decode_text
        from_bytes = int.from_bytes
        reclen = header.record_length
        per_chunk = max(1, _CHUNK // reclen)
        last = header.record_count if last is None else min(last, header.record_count)
        remaining = max(0, last - first + 1)
        recno = first - 1
        deleted = 0
        with _translate(path), path.open("rb") as fh:
            fh.seek(header.header_length + (first - 1) * reclen)
            while remaining > 0:
                n = min(per_chunk, remaining)
                chunk = fh.read(n * reclen)
                if len(chunk) < n * reclen:
                    raise SourceError(
                        f"{name}: file is truncated at record {recno + len(chunk) // reclen + 1}"
                    )
                remaining -= n
                for pos in range(0, n * reclen, reclen):
                    rec = chunk[pos : pos + reclen]
                    recno += 1
                    flag = rec[0]
                    if flag == 0x2A:  # '*'
                        deleted += 1
                        continue
                    if flag == 0x1A:
                        raise SourceError(
                            f"{name}: end-of-file mark at record {recno}, header declares "
                            f"{header.record_count} records"
                        )
                    faults: list[list[str]] | None = None
                    try:
                        values = {fname: func(rec[s:e]) for fname, func, s, e in plan}
                    except Exception:  # dirt in a field: this row goes to quarantine
                        values, faults = _salvage(plan, rec, header.encoding)
                    if nf is not None:
                        bits = from_bytes(rec[nf_start:nf_end], "little")
                        if bits:
                            for fname, mask, s, e, is_text in varfields:
                                if bits & mask:
                                    raw = rec[s : s + rec[e - 1]]
                                    try:
                                        values[fname] = decode(raw) if is_text else bytes(raw)
                                    except UnicodeDecodeError as exc:
                                        faults = (faults or []) + [
                                            _fault(fname, raw, exc, header.encoding)]
                            if bits & null_mask:
                                for fname, mask, _ in nullable:
                                    if bits & mask:
                                        values[fname] = None
                                        if faults:  # a null field's bytes are not its value
                                            faults = [f for f in faults if f[0] != fname]
                    if faults:
                        values[PROBLEM_KEY] = "; ".join(f[2] for f in faults)
                        values[FAULTS_KEY] = faults
                    yield RawRow(recno, values)
                counters["deleted"] = deleted
        counters["deleted"] = deleted


def _fault(fname: str, data: bytes, exc: BaseException, encoding: str) -> list[str]:
    """[field, raw bytes in hex, reason] for one value that cannot be read as its type."""
    if isinstance(exc, UnicodeDecodeError):
        bad = exc.object[exc.start]
        why = f"byte 0x{bad:02x} cannot be decoded as {encoding}"
    else:
        why = _one_line(exc)
    return [fname, bytes(data).hex(" "), f"{fname}: {why}"]


def _salvage(
    plan: list[tuple[str, Callable[[bytes], object], int, int]], rec: bytes, encoding: str,
) -> tuple[dict[str, object], list[list[str]]]:
    """A record with dirt in it, field by field: the values that read, and one fault for each
    field that does not (its name, its bytes in hex, why)."""
    values: dict[str, object] = {}
    faults: list[list[str]] = []
    for fname, func, s, e in plan:
        try:
            values[fname] = func(rec[s:e])
        except Exception as exc:  # any parser error of one value is that value's fault
            faults.append(_fault(fname, rec[s:e], exc, encoding))
    return values, faults


# --------------------------------------------------------------------------- public API


def _fingerprint(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for p in paths:
        with p.open("rb") as fh:
            while block := fh.read(_CHUNK):
                digest.update(block)
    return digest.hexdigest()


def read_dbf(
    path: str | Path,
    *,
    encoding: str = DEFAULT_ENCODING,
    records: tuple[int, int] | None = None,
    fingerprint: bool = True,
) -> Export:
    """Open one table: header checked now, rows streamed as the export is iterated.

    Raises ``SourceError`` at once for a missing file, a damaged or truncated header, an
    unsupported version or a missing memo file; while iterating, for an undecodable value
    (naming row and field).

    ``records`` (first, last; 1-based, inclusive) reads only that slice of the table, numbered
    as in the whole table: records are fixed-length, so two processes can read two halves.
    ``fingerprint=False`` skips hashing the files (a slice reader does not need it).
    """
    p = Path(path)
    table, header = _open_table(p, encoding)
    with _translate(p):
        files = [p] + ([header.memo_path] if header.memo_path is not None else [])
        digest = _fingerprint(files) if fingerprint else None
        size = sum(f.stat().st_size for f in files)
    counters: dict[str, int] = {"deleted": 0}
    problems = list(header.problems)
    first, last = records if records is not None else (1, header.record_count)
    suspect = []
    if header.spare_records:
        suspect.append(f"header declares {header.record_count} records, file holds "
                       f"{header.record_count + header.spare_records}")
    return Export(
        suspect=suspect,
        total=max(0, min(last, header.record_count) - first + 1),
        location=str(p),
        fingerprint=digest,
        rows=_iter_rows(table, header, counters, problems, first, last),
        problems=problems,
        counters=counters,
        reopen=("foxpro", str(p), encoding),
        size=size,
    )


_GLOB_CHARS = frozenset("*?[")


class FoxProAdapter:
    """A FoxPro source: one fixed table, or a glob of drops read oldest first."""

    def __init__(
        self, name: str, path_or_glob: str | Path, encoding: str = DEFAULT_ENCODING
    ) -> None:
        self.name = name
        self.path_or_glob = str(path_or_glob)
        self.encoding = encoding

    def _paths(self) -> list[Path]:
        if not _GLOB_CHARS & set(self.path_or_glob):
            return [Path(self.path_or_glob)]
        found = [
            Path(p)
            for p in glob.glob(self.path_or_glob)
            if p.lower().endswith(".dbf") and os.path.isfile(p)
        ]

        def mtime(p: Path) -> float:
            try:
                return p.stat().st_mtime
            except OSError:
                return 0.0

        return sorted(found, key=lambda p: (mtime(p), str(p)))

    def exports(self) -> Iterator[Export]:
        for p in self._paths():
            try:
                export = read_dbf(p, encoding=self.encoding)
            except SourceError as exc:  # this file's run fails; the next files are read
                export = failed_export(str(p), exc)
            yield export

    def done(self, export: Export) -> None:
        """Nothing to do: a fixed table is re-read each run, its fingerprint skips repeats."""
        return None
