"""The per-type value decoders of the DBF reader (``gateway.ingest.dbf``): one closure per
common VFP type, a memo file mapped into memory, single-byte code pages decoded through their
table. Exports ``decoder`` and ``charmap_table``; ``FastMemo`` is opened by the reader."""

from __future__ import annotations

import codecs
import datetime as _dt
import functools
import importlib
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from typing import Any

from dbfread.memo import VFP_TYPE_MAP, BinaryMemo

from gateway.ingest.dbf_header import MAZOVIA, MAZOVIA_DECODE, DbfField, DbfHeader

__all__ = ["FastMemo", "charmap_table", "decoder", "memo_index"]

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


class FastMemo:
    """A VFP ``.fpt`` mapped into memory: a memo is a slice, not a seek and two reads."""

    def __init__(self, mm: Any, blocksize: int, encoding: str) -> None:
        self.mm = mm
        self.blocksize = blocksize
        self.encoding = encoding

    @classmethod
    @contextmanager
    def open(cls, header: DbfHeader) -> Iterator[FastMemo | None]:
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

    def block(self, index: int) -> bytes | None:
        """Block ``index``'s bytes, its 8-byte header included (None past the file's end)."""
        offset = index * self.blocksize
        if offset + 8 > len(self.mm):
            return None
        data: bytes = self.mm[offset : offset + 8 + _UNPACK_MEMO(self.mm, offset)[1]]
        return data

    def reader(self, *, text: bool) -> Callable[[bytes], object]:
        mm, blocksize, encoding = self.mm, self.blocksize, self.encoding
        types = VFP_TYPE_MAP
        table = charmap_table(encoding)
        charmap = codecs.charmap_decode

        def memo(data: bytes) -> object:
            index = memo_index(data)
            if index <= 0:
                return None
            offset = index * blocksize
            kind, length = _UNPACK_MEMO(mm, offset)
            body = mm[offset + 8 : offset + 8 + length]
            if len(body) != length:
                raise OSError("EOF reached while reading memo")
            if text and kind == 1:
                return charmap(body, "strict", table)[0] if table else body.decode(encoding)
            return types.get(kind, BinaryMemo)(body)

        return memo


def memo_index(data: bytes) -> int:
    """The memo block a memo field's bytes point to (0: none): 4 bytes little-endian in VFP,
    digits in dBase; ValueError for anything else."""
    if len(data) == 4:
        index: int = _UNPACK_I(data)[0]
        return index
    try:
        return int(data)
    except ValueError:
        if data.strip(b" \x00"):
            raise ValueError(f"Memo index is not an integer: {data!r}") from None
        return 0


@functools.cache
def charmap_table(encoding: str) -> str | None:
    """The 256-character table of a single-byte code page, or None for any other codec.

    ``bytes.decode("cp1252")`` calls the codec's Python ``decode``, which calls
    ``codecs.charmap_decode`` with this table: calling that directly gives the same text and
    the same ``UnicodeDecodeError`` (undefined bytes are U+FFFE in the table) at a third of the
    cost per value (0.9 instead of 2.7 us a value of 12 bytes, profiled, loaded 2-core box)."""
    name = codecs.lookup(encoding).name
    if name == MAZOVIA:
        return MAZOVIA_DECODE
    try:
        module = importlib.import_module("encodings." + name.replace("-", "_"))
    except ImportError:
        return None
    table = getattr(module, "decoding_table", None)
    if not isinstance(table, str) or len(table) != 256:
        return None
    return table


def decoder(f: DbfField, fd: Any, func: Callable[[Any, bytes], object], header: DbfHeader,
          fast_memo: FastMemo | None) -> Callable[[bytes], object]:
    """The decoder of one field: a closure for the common types, else dbfread's parser."""
    encoding = header.encoding
    kind = f.type
    if kind == "C" and not f.binary:
        table = charmap_table(encoding)
        if table is not None:
            charmap = codecs.charmap_decode

            def text_charmap(data: bytes) -> object:
                return charmap(data.rstrip(b"\0 "), "strict", table)[0]

            return text_charmap

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


