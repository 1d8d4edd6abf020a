"""The one small interface every source adapter implements.

An adapter knows its outside world (DBF bytes, CSV text, ODBC rows, HTTP JSON) and nothing
past it: it yields ``RawRow``s of plain Python values keyed by the source's own column names.
Mapping, validation, quarantine and diffing happen after, the same for every adapter.

An adapter raises ``SourceError`` (one line: what and where) when a whole input cannot be read,
``NotReady`` when a drop is still being written, and never anything else on bad input.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from gateway.errors import SourceError

PROBLEM_KEY = "__problem__"
"""An adapter keeps a row it cannot read whole (a CSV line with the wrong number of fields, an
HTTP proposal that is not an object) with a one-line reason under this key; the validator
quarantines any row that carries it."""

FAULTS_KEY = "__faults__"
"""A row whose bytes held dirt (``N/A`` in a numeric field, an undecodable byte) carries, beside
``PROBLEM_KEY``, a list of ``[field, raw bytes in hex, reason]``: one quarantine line each."""


@dataclass(frozen=True)
class RawRow:
    """One record as the source holds it. ``row`` is 1-based: the record number in a file
    (deleted records included, so it matches what FoxPro shows) or the position in a result."""

    row: int
    values: Mapping[str, object]
    rawhash: bytes | None = None
    """A hash of the record's bytes (memo blocks included), when its reader keeps a record
    memory (``gateway.store.records``)."""
    known: bool = False
    """The record holds the bytes the source's last applied run read at this row: ``values``
    is empty (never decoded), the run stages it as unchanged from the memory."""


@dataclass
class Export:
    """One input read by an adapter: a file, a query result, a set of HTTP responses.

    ``fingerprint`` (e.g. a SHA-256 of the file's bytes) lets the gateway skip a byte-identical
    input without parsing it; None when the adapter cannot tell. ``complete`` is False when part
    of the input failed (an HTTP fan-out with failed calls): such an export is recorded as
    partial and never merged as if it were complete. ``counters`` (deleted records, ...) are
    final once ``rows`` is exhausted.
    """

    location: str
    fingerprint: str | None
    rows: Iterator[RawRow]
    complete: bool = True
    reopen: tuple[str, str, str] | None = None
    """How another process can read the same input again, e.g. ("foxpro", path, encoding):
    a large file is then read and validated in a second process (gateway.ingest.parallel)."""
    size: int = 0
    """The input's size in bytes, when known."""
    layout: str | None = None
    """How its records decode (a FoxPro table's ``dbf.record_layout``), for the source's
    record memory (``gateway.store.records``); None for an input without fixed records."""
    total: int | None = None
    """How many records the input holds (deleted ones included), when known ahead: the
    progress bar's length."""
    problems: list[str] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    suspect: list[str] = field(default_factory=list)
    """Why the input, though readable, looks wrong ("no records", a header that counts fewer
    records than the file holds): the run is held for a person to accept, never applied."""


class Adapter(Protocol):
    """A configured source's reader."""

    name: str

    def exports(self) -> Iterator[Export]:
        """The inputs ready to read now, oldest first (a folder may hold several drops)."""
        ...

    def done(self, export: Export) -> None:
        """Called once an export's run committed (move a drop aside, remember a cursor...)."""
        ...


@runtime_checkable
class Holding(Protocol):
    """An adapter whose held (suspect) inputs must be set aside: a CSV drop stays out of the
    folder's queue until a person accepts it, or a later export replaces it."""

    def hold(self, export: Export) -> str:
        """Set the input aside; returns where it now is."""
        ...

    def held_export(self, location: str) -> Export | None:
        """The input set aside at ``location``, read again (None when it is gone)."""
        ...


def failed_export(location: str, error: SourceError) -> Export:
    """An input that could not be opened, as an Export whose rows raise ``error``: the run
    records it as failed for that location, and the adapter's other inputs are still read
    (one bad file hides no other)."""
    return Export(location=location, fingerprint=None, rows=_raising(error))


def _raising(error: SourceError) -> Iterator[RawRow]:
    raise error
    yield  # pragma: no cover - makes this a generator, so the error comes on first next()
