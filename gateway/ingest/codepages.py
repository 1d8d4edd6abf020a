"""The code pages of DBF tables: the header's code page mark read as an encoding
(``encoding_for``: dbfread's table plus marks it lacks), the Mazovia code page (Polish
letters over cp437) registered as a codec, the default encoding and ``likely_encoding`` (the
code page sample bytes most likely are). ``gateway.ingest.dbf_header`` re-exports the public
names; importing either registers the Mazovia codec."""

from __future__ import annotations

import codecs
from typing import Any

from dbfread.codepages import codepages as _DBFREAD_CODEPAGES

__all__ = ["DEFAULT_ENCODING", "MAZOVIA", "MAZOVIA_DECODE", "encoding_for", "likely_encoding"]

DEFAULT_ENCODING = "cp1252"

_MAZOVIA = "mazovia"
# Code page marks dbfread's table lacks.
_EXTRA_CODEPAGES: dict[int, str] = {0x69: _MAZOVIA}


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
MAZOVIA, MAZOVIA_DECODE = _MAZOVIA, _MAZOVIA_DECODE
"""The Mazovia codec's name and decoding table (``dbf.charmap_table`` decodes with it)."""


def _mazovia_search(name: str) -> codecs.CodecInfo | None:
    if name != _MAZOVIA:
        return None

    def encode(text: str, errors: str = "strict") -> tuple[bytes, int]:
        return codecs.charmap_encode(text, errors, _MAZOVIA_ENCODE)

    def decode(data: Any, errors: str = "strict") -> tuple[str, int]:
        return codecs.charmap_decode(data, errors, _MAZOVIA_DECODE)

    return codecs.CodecInfo(encode, decode, name=_MAZOVIA)


codecs.register(_mazovia_search)


def encoding_for(mark: int) -> str | None:
    """The encoding a header's code page mark names (dbfread's table and ours), or None."""
    if mark in _EXTRA_CODEPAGES:
        return _EXTRA_CODEPAGES[mark]
    entry = _DBFREAD_CODEPAGES.get(mark)
    return entry[0] if entry else None


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
