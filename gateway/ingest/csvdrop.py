"""CSV drops: files a legacy system writes into a shared folder.

Rules of this module:

* **Ready or not.** With ``done_marker`` configured (e.g. ``".done"``), a drop is ready only
  when its marker file (``orders.csv.done``) exists; the writer's marker is the only signal, so
  a writer that pauses mid-file is never read early. Without a marker, a drop is ready when its
  size and mtime are the same as on the previous call of ``exports()`` *and* its mtime is at
  least ``settle_seconds`` old (a drop seen for the first time, e.g. by a one-shot run, is ready
  once its mtime is that old). A drop that is not ready is not read at all; its path goes into
  ``skipped_not_ready`` for this call.
* **Byte order marks** (UTF-8, UTF-16) are detected: the file is decoded as its mark says, and
  the export's problems name the mark when it disagrees with the configured encoding.
* **Changed while read.** The size and mtime are taken again after the bytes are read; if they
  differ, reading that export's rows raises ``NotReady`` (a ``SourceError``) "file changed while
  being read", and the drop is tried again later.
* **One bad drop hides no other.** A drop that cannot be read (undecodable bytes, no header,
  changed while read) still yields an ``Export``; the ``SourceError`` is raised when its rows
  are read, so the other drops of the same call are unaffected.
* **Row numbers** are CSV record numbers after the header, 1-based: the first data record is
  row 1. Blank lines count as records (so row N is line N+1 of the file unless a quoted field
  spans lines) but are not yielded.
* **Undecodable bytes quarantine their row**, not the drop: the row carries ``FAULTS_KEY``
  (field, the raw bytes in hex, the reason) and the rest of the drop is read.
* **Malformed rows are kept, never dropped.** A record whose field count differs from the
  header's is yielded with the values it has, keyed by the header, plus the key
  ``"__problem__"`` (``PROBLEM_KEY``) holding a one-line reason, e.g. ``"row has 7 fields,
  header has 9"``; extra fields go under ``"__extra__"`` as a list. The validator quarantines
  any row that carries ``"__problem__"``.
* **Fingerprint** is the SHA-256 of the file's bytes, so the gateway skips a byte-identical
  drop without parsing it.
* **hold()** moves a drop the gateway holds as suspect into ``held/``; ``held_export()`` reads
  it from there when a person accepts it (``done()`` then moves it into ``processed/``).
* **done()** moves the drop (and its marker) into ``processed/`` (a name already taken there
  gets a ``.1``, ``.2``... suffix). With ``archive=False`` files stay where they are; the
  adapter remembers the fingerprint each file had when it was done and does not yield it again
  while the bytes are unchanged, and the gateway's fingerprint skip covers restarts.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import NotReady, SourceError
from gateway.ingest.base import FAULTS_KEY, PROBLEM_KEY, Export, RawRow, failed_export

EXTRA_KEY = "__extra__"
PROCESSED_DIR = "processed"
HELD_DIR = "held"

_Stat = tuple[int, int]  # (size in bytes, mtime in nanoseconds)
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes kept by errors="surrogateescape"


@dataclass(frozen=True)
class _Drop:
    path: Path
    marker: Path | None
    fingerprint: str


class CsvDropAdapter:
    """Reads the ready CSV drops of one folder, oldest first."""

    def __init__(
        self,
        name: str,
        folder: str | os.PathLike[str],
        *,
        pattern: str = "*.csv",
        encoding: str = "utf-8",
        delimiter: str = ",",
        settle_seconds: float = 2.0,
        done_marker: str | None = None,
        archive: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.folder = Path(folder)
        self.pattern = pattern
        self.encoding = encoding
        self.delimiter = delimiter
        self.settle_seconds = settle_seconds
        self.done_marker = done_marker
        self.archive = archive
        self._clock = clock
        self._seen: dict[Path, _Stat] = {}
        self._done_fingerprints: dict[Path, str] = {}
        self._yielded: dict[str, _Drop] = {}
        self._held: dict[str, Path] = {}
        self.skipped_not_ready: list[str] = []
        """Paths of the drops left for a later run by the last ``exports()`` call."""

    def exports(self) -> Iterator[Export]:
        """One Export per ready drop, oldest (by mtime, then name) first."""
        self.skipped_not_ready = []
        now = self._clock()
        candidates: list[tuple[int, str, Path, _Stat]] = []
        seen_now: dict[Path, _Stat] = {}
        for path in self._candidates():
            stat = _stat(path)
            if stat is None:
                continue
            seen_now[path] = stat
            candidates.append((stat[1], path.name, path, stat))
        previous, self._seen = self._seen, seen_now
        for _mtime, _name, path, stat in sorted(candidates):
            marker = self._marker(path)
            if not self._ready(stat, previous.get(path), marker, now):
                self.skipped_not_ready.append(str(path))
                continue
            export = self._read(path, stat, marker)
            if export is not None:
                yield export

    def done(self, export: Export) -> None:
        """Move the drop (and its marker) into ``processed/``, or remember its fingerprint."""
        drop = self._yielded.pop(export.location, None)
        if drop is None:
            raise SourceError(
                f"csv source {self.name!r}: done() for {export.location}, "
                "which this adapter did not yield"
            )
        if not self.archive:
            self._done_fingerprints[drop.path] = drop.fingerprint
            return
        self._move(drop, self.folder / PROCESSED_DIR)

    def _move(self, drop: _Drop, target_dir: Path) -> Path:
        """Move a drop and its marker into ``target_dir`` (under a free name); the new path."""
        try:
            target_dir.mkdir(exist_ok=True)
            target = _free_name(target_dir, drop.path.name)
            os.replace(drop.path, target)
            if drop.marker is not None and drop.marker.exists():
                os.replace(drop.marker, target_dir / (target.name + (self.done_marker or "")))
        except OSError as exc:
            raise SourceError(
                f"csv source {self.name!r}: cannot move {drop.path} into {target_dir}: "
                f"{exc.strerror or exc}"
            ) from exc
        self._seen.pop(drop.path, None)
        return target

    def hold(self, export: Export) -> str:
        """Move a held (suspect) drop and its marker into ``held/``: later drops are read past
        it, and ``held_export`` reads it again when a person accepts it."""
        drop = self._yielded.pop(export.location, None)
        if drop is None:
            return export.location
        target = self._move(drop, self.folder / HELD_DIR)
        self._held[str(drop.path)] = target
        return str(target)

    def held_export(self, location: str) -> Export | None:
        """The drop held from ``location`` (now in ``held/``), read again."""
        path = self._held.get(location)
        if path is None:
            candidate = self.folder / HELD_DIR / Path(location).name
            path = candidate if candidate.is_file() else None
        if path is None:
            return None
        stat = _stat(path)
        if stat is None:
            return None
        export = self._read(path, stat, None)
        if export is None:
            return None
        export.location = location  # the run is recorded where the drop was found
        self._yielded[location] = self._yielded.pop(str(path))
        return export

    # -- internals -------------------------------------------------------------------------

    def _candidates(self) -> list[Path]:
        try:
            paths = list(self.folder.glob(self.pattern))
        except OSError as exc:
            raise SourceError(
                f"csv source {self.name!r}: cannot list {self.folder}: {exc.strerror or exc}"
            ) from exc
        marker = self.done_marker
        return [
            p for p in paths if p.is_file() and not (marker is not None and p.name.endswith(marker))
        ]

    def _marker(self, path: Path) -> Path | None:
        if self.done_marker is None:
            return None
        return path.with_name(path.name + self.done_marker)

    def _ready(self, stat: _Stat, previous: _Stat | None, marker: Path | None, now: float) -> bool:
        if marker is not None:
            return marker.exists()
        # unchanged for the settle time: its mtime is that old, and it is as it was on the
        # previous look (a first look, e.g. a one-shot `gateway ingest`, has only the mtime)
        settled = stat[1] / 1e9 <= now - self.settle_seconds
        return settled and (previous is None or previous == stat)

    def _read(self, path: Path, before: _Stat, marker: Path | None) -> Export | None:
        location = str(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None  # moved away between listing and reading: nothing to read
        except OSError as exc:
            error = SourceError(
                f"csv source {self.name!r}: cannot read {path}: {exc.strerror or exc}"
            )
            return failed_export(location, error)
        after = _stat(path)
        if after != before or len(data) != before[0]:
            error = NotReady(
                f"csv source {self.name!r}: file changed while being read: {path}; "
                "it is read again on a later run"
            )
            return failed_export(location, error)
        fingerprint = hashlib.sha256(data).hexdigest()
        if self._done_fingerprints.get(path) == fingerprint:
            return None  # archive=False: already done with exactly these bytes
        self._yielded[location] = _Drop(path, marker, fingerprint)
        counters: dict[str, int] = {}
        problems: list[str] = []
        rows = _parse(self.name, path, data, self.encoding, self.delimiter, counters, problems)
        return Export(location=location, fingerprint=fingerprint, rows=rows, counters=counters,
                      problems=problems, size=len(data),
                      total=max(0, data.count(b"\n") - 1))  # about: quoted line breaks


def _stat(path: Path) -> _Stat | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_size, st.st_mtime_ns)


def _free_name(folder: Path, name: str) -> Path:
    target = folder / name
    stem, suffix = os.path.splitext(name)
    n = 0
    while target.exists():
        n += 1
        target = folder / f"{stem}.{n}{suffix}"
    return target


def _parse(
    source: str,
    path: Path,
    data: bytes,
    encoding: str,
    delimiter: str,
    counters: dict[str, int],
    problems: list[str],
) -> Iterator[RawRow]:
    """The drop's records as RawRows; raises SourceError for an unreadable drop."""
    where = f"csv source {source!r}: {path}"
    bom = _bom(data)
    if bom is not None and _codec_name(bom[1]) != _codec_name(encoding):
        # the file says what it is: a BOM read as the configured code page would turn the
        # first column's name into garbage and quarantine every row as "column ... missing"
        problems.append(f"{path.name}: starts with a {bom[0]} byte order mark; read as "
                        f"{bom[1]}, not the configured {encoding}")
        encoding = bom[1]
    try:
        # surrogateescape keeps undecodable bytes as lone surrogates, so the record and field
        # holding them can be named; a strict decoder can only give a byte offset.
        text = data.decode(encoding, errors="surrogateescape")
    except LookupError as exc:
        raise SourceError(f"{where}: unknown encoding {encoding!r}") from exc
    text = text.removeprefix("\ufeff")
    if bom is not None:
        counters["bom"] = 1
    check = _UNDECODABLE.search(text) is not None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise SourceError(f"{where}: header: {exc}") from exc
    if header is None or header == [] or header == [""]:
        raise SourceError(f"{where}: empty file or missing header line")
    for column in header:
        if _undecodable(column):
            raise SourceError(
                f"{where}: header: bytes that are not valid {encoding} in column {column!r}"
            )
    duplicates = sorted({c for c in header if header.count(c) > 1})
    if duplicates:
        names = ", ".join(map(repr, duplicates))
        raise SourceError(f"{where}: header: duplicate column(s) {names}")
    counters.update(rows=0, blank_lines=0, malformed_rows=0)
    row = 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise SourceError(f"{where}: row {row + 1}: {exc}") from exc
        row += 1
        if not record:
            counters["blank_lines"] += 1
            continue
        faults: list[list[str]] = []
        for index, value in enumerate(record if check else ()):
            if _undecodable(value):
                field = header[index] if index < len(header) else f"extra field {index + 1}"
                raw = value.encode(encoding, errors="surrogateescape")
                bad = _UNDECODABLE.search(value)
                byte = ord(bad.group()) - 0xDC00 if bad else 0
                faults.append([field, raw.hex(" "),
                               f"{field}: byte 0x{byte:02x} cannot be decoded as {encoding}"])
        values: dict[str, object] = dict(zip(header, record, strict=False))
        for fault in faults:  # the undecodable text is not kept as if it were a value (its
            values.pop(fault[0], None)  # lone surrogates cannot be stored)
        if len(record) != len(header):
            values[PROBLEM_KEY] = f"row has {len(record)} fields, header has {len(header)}"
            if len(record) > len(header):
                values[EXTRA_KEY] = [v.encode(encoding, "surrogateescape").decode(
                    encoding, "replace") for v in record[len(header):]]
            counters["malformed_rows"] += 1
        elif faults:
            values[PROBLEM_KEY] = "; ".join(f[2] for f in faults)
            values[FAULTS_KEY] = faults
        counters["rows"] += 1
        yield RawRow(row=row, values=values)


_BOMS = (
    (codecs.BOM_UTF8, "UTF-8", "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "UTF-16 LE", "utf-16"),
    (codecs.BOM_UTF16_BE, "UTF-16 BE", "utf-16"),
)


def _bom(data: bytes) -> tuple[str, str] | None:
    """(name, encoding) of the byte order mark the data starts with, or None."""
    for mark, name, encoding in _BOMS:
        if data.startswith(mark):
            return name, encoding
    return None


def _codec_name(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name.removesuffix("-sig")
    except LookupError:
        return encoding


def _undecodable(value: str) -> bool:
    return _UNDECODABLE.search(value) is not None
