"""Write-back of driver results as CSV drops the legacy system imports.

``DriverResult`` (one driver's outcome at one stop) and ``RESULT_COLUMNS`` are shared with
``gateway.writeback.odbc``: both writers emit the same columns in the same order. Both accept
``DriverResult``s or plain mappings keyed by those column names (any case), like
``gateway.writeback.dbffile`` does; times should already be in the legacy system's local time.

Rules of this module:

* One file per call, ``{prefix}{stamp}.csv``; the caller gives ``stamp`` (a timestamp or
  sequence, e.g. ``20261127T0130-0001``) so names sort in the order they were written. A name
  that already exists is an error, never overwritten.
* The file is written under a hidden temporary name (``.{name}.tmp``, which no ``*.csv``
  import matches), flushed to disk, then renamed into place: the legacy import sees a whole
  file or none.
* Idempotent across restarts: results whose ``result_id`` appears in an earlier drop of the
  folder (any ``{prefix}*.csv``) are skipped, as are repeats within one call. When nothing is
  left to write, no file is written and ``None`` is returned. A drop the legacy system has
  already imported *and removed* is no longer seen here; the caller's own record of what it
  wrote covers that case.
* Values: times in ISO 8601 (``2026-11-27T08:30:00+01:00``), None as an empty field. A character
  the target encoding cannot hold (an emoji in a note, for a cp1252 system) becomes ``?``: one
  odd note must not block every later write-back.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gateway.errors import ConfigError, SourceError

RESULT_COLUMNS = ("result_id", "order_id", "result", "reason", "arrived_at", "done_at", "note")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")


@dataclass(frozen=True)
class DriverResult:
    """What a driver reported for one stop, as the legacy system imports it."""

    result_id: str
    order_id: str
    result: str  # delivered, failed, refused...
    reason: str | None = None
    arrived_at: datetime | None = None
    done_at: datetime | None = None
    note: str | None = None

    def values(self) -> tuple[str | datetime | None, ...]:
        """The values in ``RESULT_COLUMNS`` order."""
        return tuple(getattr(self, column) for column in RESULT_COLUMNS)

    @classmethod
    def of(cls, result: DriverResult | Mapping[str, object]) -> DriverResult:
        """A DriverResult as is, or one built from a mapping keyed by column names (any case)."""
        if isinstance(result, DriverResult):
            return result
        lowered = {str(key).lower(): value for key, value in result.items()}
        label = lowered.get("result_id") or f"for order {lowered.get('order_id')!r}"

        def text(column: str) -> str | None:
            value = lowered.get(column)
            return None if value is None or value == "" else str(value)

        def required(column: str) -> str:
            value = text(column)
            if value is None:
                raise SourceError(f"write-back: result {label}: {column} is missing")
            return value

        def time(column: str) -> datetime | None:
            value = lowered.get(column)
            if value is None or isinstance(value, datetime):
                return value
            raise SourceError(f"write-back: result {label}: {column} {value!r} is not a datetime")

        return cls(
            result_id=required("result_id"),
            order_id=required("order_id"),
            result=required("result"),
            reason=text("reason"),
            arrived_at=time("arrived_at"),
            done_at=time("done_at"),
            note=text("note"),
        )


def append_results_csv(
    folder: str | os.PathLike[str],
    results: Iterable[DriverResult | Mapping[str, object]],
    *,
    stamp: str,
    prefix: str = "results-",
    encoding: str = "utf-8",
    delimiter: str = ",",
) -> Path | None:
    """Write the results not yet in an earlier drop as ``folder/{prefix}{stamp}.csv``.

    Returns the new file's path, or None when every result was already written.
    """
    folder = Path(folder)
    if not stamp or not _SAFE_NAME.fullmatch(prefix + stamp):
        raise ConfigError(
            f"csv write-back: {prefix + stamp!r} is not a safe file name "
            "(letters, digits, _ . + - only)"
        )
    target = folder / f"{prefix}{stamp}.csv"
    if target.exists():
        raise SourceError(f"csv write-back: {target} already exists; give each drop a new stamp")
    written = _ids_in_drops(folder, prefix, encoding, delimiter)
    fresh: list[DriverResult] = []
    for result in map(DriverResult.of, results):
        if result.result_id not in written:
            written.add(result.result_id)
            fresh.append(result)
    if not fresh:
        return None
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(RESULT_COLUMNS)
    for result in fresh:
        writer.writerow([_text(value) for value in result.values()])
    try:
        data = buffer.getvalue().encode(encoding, errors="replace")
    except LookupError as exc:
        raise ConfigError(f"csv write-back: unknown encoding {encoding!r}") from exc
    temporary = folder / f".{target.name}.tmp"
    try:
        with open(temporary, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, target)
        _fsync_dir(folder)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise SourceError(f"csv write-back: cannot write {target}: {exc.strerror or exc}") from exc
    return target


def _ids_in_drops(folder: Path, prefix: str, encoding: str, delimiter: str) -> set[str]:
    """The result ids already written to the folder's earlier drops."""
    ids: set[str] = set()
    for path in sorted(folder.glob(f"{prefix}*.csv")):
        try:
            text = path.read_bytes().decode(encoding, errors="replace")
        except OSError as exc:
            raise SourceError(
                f"csv write-back: cannot read earlier drop {path}: {exc.strerror or exc}"
            ) from exc
        reader = csv.reader(
            io.StringIO(text.removeprefix("\ufeff"), newline=""), delimiter=delimiter
        )
        header = next(reader, None)
        if header is None or "result_id" not in header:
            raise SourceError(
                f"csv write-back: earlier drop {path} has no result_id column; "
                "move it out of the write-back folder"
            )
        column = header.index("result_id")
        ids.update(record[column] for record in reader if len(record) > column)
    return ids


def _text(value: str | datetime | None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not supported here (e.g. Windows); the rename itself is still atomic
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
