"""The Visual FoxPro / dBase ``.dbf`` reader, built on dbfread (the source adapter is
``gateway.ingest.foxpro``; the header side is ``gateway.ingest.dbf_header``).

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
  naive ``datetime``; ``D`` to ``date``; ``L`` to ``bool`` or None; ``M`` to ``str``;
* dirt quarantines its row, not the file: a value that cannot be read as its type (``N/A``
  in a numeric field, garbage in a date, an undecodable byte) leaves the row with
  ``FAULTS_KEY`` ([field, raw bytes in hex, reason] each) and the rest is read; only broken
  structure (truncated, an end-of-file mark in a record, a missing memo file) refuses it.

Every dbfread / OS / parsing exception is translated in one place (``translate_errors``) into a
one-line ``SourceError`` naming the file, and the row and field when there is one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from hashlib import blake2b
from pathlib import Path
from types import MappingProxyType

from dbfread import DBF
from dbfread.memo import (
    DB3MemoFile,
    DB4MemoFile,
    FakeMemoFile,
    MemoFile,
    VFPMemoFile,
)

from gateway.errors import SourceError
from gateway.ingest.base import FAULTS_KEY, PROBLEM_KEY, Export, RawRow
from gateway.ingest.dbf_decode import FastMemo, decoder, memo_index
from gateway.ingest.dbf_header import (
    CHUNK,
    DEFAULT_ENCODING,
    KNOWN_TYPES,
    DbfField,
    DbfHeader,
    Parser,
    one_line,
    open_table,
    source_error,
    translate_errors,
)
from gateway.store.records import HASH_BYTES

__all__ = ["read_dbf", "record_layout"]


_MEMO_HEADER = 512
"""Every memo file (.fpt, .dbt, .dct) starts with a 512-byte header."""


def _memo_file(header: DbfHeader) -> MemoFile:
    path = header.memo_path
    if path is None:
        return FakeMemoFile(None)
    # checked before dbfread opens it: on a shorter file it fails in its constructor with a
    # struct.error and leaves the file open (found by tests/security/test_fuzz.py)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise source_error(path, exc) from None
    if size < _MEMO_HEADER:
        raise SourceError(f"{header.path.name}: memo file {path.name} is truncated ({size} "
                          f"bytes; a memo file starts with a {_MEMO_HEADER}-byte header)")
    suffix = path.suffix.lower()
    if suffix in (".fpt", ".dct"):
        return VFPMemoFile(str(path))
    if header.version == 0x83:
        return DB3MemoFile(str(path))
    return DB4MemoFile(str(path))


def record_layout(header: DbfHeader) -> str:
    """What decides how a record's bytes decode, as text: the record memory's context
    (``gateway.store.records``) changes with it."""
    fields = [(f.name, f.type, f.length, f.decimals, f.offset, f.nullable, f.binary)
              for f in (*header.fields, *([header.nullflags] if header.nullflags else []))]
    return json.dumps([header.version, header.encoding, header.record_length, fields])


def _is_memo(field: DbfField) -> bool:
    """A field whose bytes point into the memo file (a dBase ``B`` is a memo, VFP's a double)."""
    return field.type in ("M", "G", "P") or (field.type == "B" and field.length == 10)


Hasher = Callable[[bytes], bytes | None]


def _hasher(header: DbfHeader, fast_memo: FastMemo | None) -> Hasher | None:
    """A record's memory hash: its bytes and the memo blocks its memo fields point to (a memo
    rewritten in place changes it too). None when the memo file is not mapped (a ``.dbt``);
    the function answers None for a record whose memo pointer does not read."""
    slots = [(f.offset, f.offset + f.length) for f in header.fields if _is_memo(f)]
    if not slots:
        return lambda rec: blake2b(rec, digest_size=HASH_BYTES).digest()
    if fast_memo is None:
        return None
    block = fast_memo.block

    def key(rec: bytes) -> bytes | None:
        digest = blake2b(rec, digest_size=HASH_BYTES)
        for start, end in slots:
            try:
                index = memo_index(rec[start:end])
            except ValueError:
                return None
            if index > 0:
                data = block(index)
                if data is None:
                    return None
                digest.update(data)
        return digest.digest()

    return key


_UNREAD: Mapping[str, object] = MappingProxyType({})


def _iter_rows(
    table: DBF, header: DbfHeader, counters: dict[str, int], problems: list[str],
    first: int = 1, last: int | None = None, memory: bytearray | None = None,
) -> Iterator[RawRow]:
    path = header.path
    name = path.name
    counters["deleted"] = 0
    memo = _memo_file(header)
    with memo, FastMemo.open(header) as fast_memo:
        parser = Parser(table, memo)
        raw_by_name = {f.name: f for f in table.fields}
        plan: list[tuple[str, Callable[[bytes], object], int, int]] = []
        varfields: list[tuple[str, int, int, int, bool]] = []
        nullable: list[tuple[str, int, int]] = []
        bit = 0
        for f in header.fields:
            if f.type not in KNOWN_TYPES:
                problems.append(f"{name}: field {f.name} has unknown type {f.type!r}; skipped")
                continue
            start, end = f.offset, f.offset + f.length
            fd = raw_by_name[f.name]
            func = getattr(parser, "parse" + f.type, None)
            if func is None:
                func = parser.parse
            elif f.type == "M" and f.binary:
                func = parser.parseG  # binary memo (NOCPTRANS): raw bytes, not text
            plan.append((f.name, decoder(f, fd, func, header, fast_memo), start, end))
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
        hasher = _hasher(header, fast_memo) if memory is not None else None
        remembered = memory if memory is not None else bytearray()
        rawhash: bytes | None = None
        reclen = header.record_length
        per_chunk = max(1, CHUNK // reclen)
        last = header.record_count if last is None else min(last, header.record_count)
        remaining = max(0, last - first + 1)
        recno = first - 1
        deleted = 0
        with translate_errors(path), path.open("rb") as fh:
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
                    if hasher is not None:
                        rawhash = hasher(rec)
                        at = (recno - first) * HASH_BYTES
                        if rawhash is not None and remembered[at : at + HASH_BYTES] == rawhash:
                            yield RawRow(recno, _UNREAD, rawhash, True)
                            continue
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
                    yield RawRow(recno, values, rawhash)
                counters["deleted"] = deleted
        counters["deleted"] = deleted


def _fault(fname: str, data: bytes, exc: BaseException, encoding: str) -> list[str]:
    """[field, raw bytes in hex, reason] for one value that cannot be read as its type."""
    if isinstance(exc, UnicodeDecodeError):
        bad = exc.object[exc.start]
        why = f"byte 0x{bad:02x} cannot be decoded as {encoding}"
    else:
        why = one_line(exc)
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
            while block := fh.read(CHUNK):
                digest.update(block)
    return digest.hexdigest()


def read_dbf(
    path: str | Path,
    *,
    encoding: str = DEFAULT_ENCODING,
    records: tuple[int, int] | None = None,
    fingerprint: bool = True,
    memory: bytearray | None = None,
) -> Export:
    """Open one table: header checked now, rows streamed as the export is iterated.

    Raises ``SourceError`` at once for a missing file, a damaged or truncated header, an
    unsupported version or a missing memo file; while iterating, for broken structure (an
    end-of-file mark in a record). A value that cannot be read is its row's fault
    (``FAULTS_KEY``), not an error.

    ``records`` (first, last; 1-based, inclusive) reads only that slice of the table, numbered
    as in the whole table: records are fixed-length, so two processes can read two halves.
    ``fingerprint=False`` skips hashing the files (a slice reader does not need it).

    ``memory`` (the hashes ``gateway.store.records.expected`` gives, by record number from
    ``first``): every row carries its record's hash, and a record whose hash is the one
    remembered is not decoded (``RawRow.known``, empty values).
    """
    p = Path(path)
    table, header = open_table(p, encoding)
    with translate_errors(p):
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
        rows=_iter_rows(table, header, counters, problems, first, last, memory),
        problems=problems,
        counters=counters,
        reopen=("foxpro", str(p), encoding),
        layout=record_layout(header),
        size=size,
    )
