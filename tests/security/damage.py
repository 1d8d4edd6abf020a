"""What a broken export looks like, for the file fuzz (test_fuzz_files.py): hypothesis
strategies that damage a DBF, its memo file or a CSV drop in one region.

``damage(files)`` picks one file of a table and one region of it (the DBF header, the field
descriptors, the records, the end mark; a memo file's header or its blocks; a CSV as a whole)
and overwrites bytes there (with bytes that mean something in a DBF, or any), truncates inside
it (its first and last byte included), inserts a run or cuts one. ``broken_csv(good)``
re-encodes a CSV drop (UTF-16, a BOM, cp1252), breaks its quotes, puts a NUL or a lone CR in
it, cuts it mid-row, drops its header, widens a row to 10 MB, or damages its bytes."""

from __future__ import annotations

import struct

from hypothesis import strategies as st


def _regions(name: str, data: bytes) -> dict[str, tuple[int, int]]:
    """The byte ranges [start, end) of a DBF's or memo file's regions (from the header's own
    counts, read here: the reader may refuse the table, as it does dBase II)."""
    if name.lower().endswith(".dbf"):
        count, header_length, record_length = struct.unpack_from("<IHH", data, 4)
        body = min(len(data), header_length + count * record_length)
        return {"dbf header": (0, 32), "field descriptors": (32, header_length),
                "records": (header_length, body), "end mark": (body, len(data))}
    return {"memo header": (0, 512), "memo blocks": (512, len(data))}


SPECIAL = (0x00, 0xFF, 0x7F, 0x80, 0x0D, 0x1A, 0x20, 0x2A, ord("0"), ord("9"), ord("C"),
           ord("M"), ord("N"), ord("T"))
"""Bytes that mean something in a DBF: NUL, all-ones, the descriptor terminator (0x0D), EOF
(0x1A), deleted (*), field types, digits."""


@st.composite
def damage(draw: st.DrawFn, files: dict[str, bytes]) -> tuple[str, str, bytes]:
    """(the file, the region, its damaged bytes)."""
    name = draw(st.sampled_from(sorted(files)))
    data = files[name]
    key = (name, hash(data))
    if key not in _REGIONS:
        _REGIONS[key] = ({"csv": (0, len(data))} if name.endswith(".csv")
                         else _regions(name, data))
    regions = _REGIONS[key]
    region = draw(st.sampled_from(sorted(regions)))
    start, end = regions[region]
    end = max(end, start + 1)
    at = draw(st.one_of(st.sampled_from((start, end - 1)), st.integers(start, end - 1)))
    how = draw(st.sampled_from(("overwrite", "overwrite", "truncate", "insert", "cut")))
    if how == "truncate":
        return name, f"{region}: truncated at {at}", data[:at]
    if how == "insert":
        run = draw(st.binary(min_size=1, max_size=64))
        return name, f"{region}: {len(run)} bytes inserted at {at}", data[:at] + run + data[at:]
    if how == "cut":
        n = draw(st.integers(1, 600))
        return name, f"{region}: {n} bytes cut at {at}", data[:at] + data[at + n:]
    new = bytes(draw(st.lists(st.one_of(st.sampled_from(SPECIAL), st.integers(0, 255)),
                              min_size=1, max_size=8)))
    return name, f"{region}: {new.hex()} at {at}", data[:at] + new + data[at + len(new):]


_REGIONS: dict[tuple[str, int], dict[str, tuple[int, int]]] = {}


@st.composite
def broken_csv(draw: st.DrawFn, good: bytes) -> tuple[str, bytes]:
    """A CSV drop re-encoded, with a BOM, broken quotes, NULs, lone CRs or cut mid-row."""
    text = good.decode("utf-8")
    how = draw(st.sampled_from(("utf-16", "utf-8-sig", "cp1252", "bom-twice", "quote",
                                "nul", "cr", "half row", "no header", "wide", "bytes")))
    if how == "utf-16":
        return how, text.encode("utf-16")
    if how == "utf-8-sig":
        return how, text.encode("utf-8-sig")
    if how == "cp1252":  # what the legacy export writes, read as UTF-8
        return how, text.encode("cp1252", "replace")
    if how == "bom-twice":
        return how, b"\xef\xbb\xbf\xef\xbb\xbf" + good
    lines = text.split("\r\n")
    row = draw(st.integers(0, len(lines) - 1))
    if how == "quote":
        at = draw(st.integers(0, len(lines[row])))
        lines[row] = lines[row][:at] + draw(st.sampled_from(('"', '""', '"x"y', "'"))) + \
            lines[row][at:]
    elif how == "nul":
        lines[row] = lines[row].replace(",", ",\x00", 1)
    elif how == "cr":
        lines[row] = lines[row].replace(",", ",\r", 1)
    elif how == "half row":
        return how, "\r\n".join([*lines[:row], lines[row][:len(lines[row]) // 2]]).encode()
    elif how == "no header":
        lines = lines[1:]
    elif how == "wide":  # one field of 10 MB: over any sane row
        lines[row] = lines[row] + "," + "x" * (10 << 20)
    else:
        return how, draw(damage({"orders.csv": good}))[2]
    return how, "\r\n".join(lines).encode("utf-8", "surrogatepass")
