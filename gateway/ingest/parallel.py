"""Read and validate a large file export in a second process while this one stages it.

Reading, validating and encoding a FoxPro row costs more than staging and diffing it: on a
two-core depot box two child processes each read one half of the table (records are
fixed-length, so a slice is a seek) while this process stages their batches in its temp tables,
exactly as the single-process path does. Whatever the child raises comes back as a
one-line SourceError; the run then fails and changes nothing.

Used for inputs of at least ``PARALLEL_MIN_BYTES`` on a machine with more than one core.
"""

from __future__ import annotations

import os
import pickle
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.errors import SourceError
from gateway.ingest.base import FAULTS_KEY, Export, RawRow
from gateway.ingest.mapping import Mapping
from gateway.ingest.validate import RowValidator, Valid
from gateway.store.staging import BadRow, StagedTuple, dump_record, staged_tuple

PARALLEL_MIN_BYTES = 8 * 1024 * 1024
BATCH = 5000

Faults = dict[str, list[Any]]
"""Rows whose bytes held dirt, by how they failed (``undecodable bytes`` or ``field X``):
[rows, sample raw bytes...] (a few samples, for guessing the file's encoding)."""
Known = list[tuple[int, bytes]]
"""Rows whose record holds the bytes the source's memory remembers: (row, hash) each."""
Prepared = tuple[list[StagedTuple], list[BadRow], int, Faults, Known]
"""One batch: staged rows, refused rows' problems, how many rows were refused, their faults,
the rows known unchanged (never decoded)."""
_SAMPLES = 20


def worth_it(export: Export) -> bool:
    return (export.reopen is not None and export.size >= PARALLEL_MIN_BYTES
            and (os.cpu_count() or 1) > 1)


def prepare(raws: list[RawRow], validator: RowValidator) -> Prepared:
    """Validate and encode one batch of rows (the work either process does)."""
    staged: list[StagedTuple] = []
    bad: list[BadRow] = []
    refused = 0
    faults: Faults = {}
    known: Known = [(raw.row, raw.rawhash) for raw in raws if raw.known and raw.rawhash]
    if known:
        raws = [raw for raw in raws if not raw.known]
    for raw, result in zip(raws, validator.validate_many(raws), strict=True):
        if isinstance(result, Valid):
            # a valid row's raw record is not kept: only a refused row is ever re-tried
            # (a duplicate order id is not something a mapping can fix)
            staged.append(staged_tuple(result.row, result.order_id, result.values,
                                       rawhash=raw.rawhash))
        else:
            refused += 1
            if FAULTS_KEY in raw.values:
                _tally(faults, raw.values[FAULTS_KEY])
            record = dump_record(raw.values)
            bad.extend(BadRow(result.row, result.order_id, p.field, p.raw, p.reason, record)
                       for p in result.problems)
    return staged, bad, refused, faults, known


def fault_kind(reason: str, field: str) -> str:
    """How a value failed, for "most rows fail the same way": an undecodable byte in any field
    is one way (the file's encoding is not the configured one); else one way per field."""
    return "undecodable bytes" if "cannot be decoded" in reason else f"field {field}"


def _tally(faults: Faults, row_faults: Any) -> None:
    kinds: dict[str, str] = {}
    for field, raw_hex, reason in row_faults:
        kinds.setdefault(fault_kind(str(reason), str(field)), str(raw_hex))
    for kind, raw_hex in kinds.items():
        entry = faults.setdefault(kind, [0])
        entry[0] += 1
        if len(entry) <= _SAMPLES:
            entry.append(bytes.fromhex(raw_hex))


def merge_faults(total: Faults, batch: Faults) -> None:
    for kind, (rows, *samples) in batch.items():
        entry = total.setdefault(kind, [0])
        entry[0] += rows
        entry.extend(samples[: max(0, _SAMPLES + 1 - len(entry))])


def batches(rows: Iterator[RawRow], size: int = BATCH) -> Iterator[list[RawRow]]:
    batch: list[RawRow] = []
    for raw in rows:
        batch.append(raw)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass(frozen=True)
class MemorySpec:
    """How reading processes use a source's record memory (``gateway.store.records``): every
    row gets its record's hash; with ``db``, records whose hash the store remembers for
    ``source`` are not decoded."""

    layout: str
    """The record layout the run's context was made for (``dbf.record_layout``): a reader that
    finds another one (the file replaced meanwhile) fails the run."""
    source: str
    db: str | None = None


def _open(reopen: tuple[str, str, str], part: int, parts: int,
          memory: MemorySpec | None) -> Export:
    """The ``part``-th of ``parts`` equal slices of the input, re-opened in this process."""
    kind, path, encoding = reopen
    if kind != "foxpro":
        raise SourceError(f"{path}: cannot be re-opened in another process ({kind})")
    # dbfread (the gateway extra): +16 ms
    from gateway.ingest.dbf import read_dbf, record_layout
    from gateway.ingest.dbf_header import read_header

    header = read_header(path, encoding=encoding)
    count = header.record_count
    size = -(-count // parts)
    first = part * size + 1
    last = min(count, first + size - 1)
    hashes = None
    if memory is not None:
        if record_layout(header) != memory.layout:
            raise SourceError(f"{path}: the table's header changed while it was read; "
                              "nothing applied, run again")
        from gateway.store.records import expected

        hashes = (expected(Path(memory.db), memory.source, first, last)
                  if memory.db is not None else bytearray())
    return read_dbf(path, encoding=encoding, records=(first, last), fingerprint=False,
                    memory=hashes)


def _child_main() -> None:
    """A reading process: a pickled (reopen, part, parts, mapping, drivers, memory) on stdin,
    pickled frames on stdout."""
    out = sys.stdout.buffer
    reopen, part, parts, mapping, drivers, memory = pickle.load(sys.stdin.buffer)
    try:
        export = _open(reopen, part, parts, memory)
        validator = RowValidator(mapping, drivers=drivers)
        for raws in batches(export.rows):
            pickle.dump(("batch", prepare(raws, validator)), out, pickle.HIGHEST_PROTOCOL)
        pickle.dump(("done", dict(export.counters), list(export.problems)), out)
    except SourceError as exc:
        pickle.dump(("error", str(exc)), out)
    except Exception as exc:  # everything crosses back as one line; the parent fails the run
        pickle.dump(("error", f"{reopen[1]}: reading failed: {type(exc).__name__}: {exc}"), out)
    out.flush()


class _Reader:
    """One reading process and the thread that unpickles its frames onto the shared queue."""

    def __init__(self, reopen: tuple[str, str, str], part: int, parts: int, mapping: Mapping,
                 drivers: frozenset[str] | None, memory: MemorySpec | None,
                 frames: queue.Queue[tuple[Any, ...]]) -> None:
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}
        self.errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway.ingest.parallel"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.errors, env=env)
        assert self.proc.stdin is not None
        pickle.dump((reopen, part, parts, mapping, drivers, memory), self.proc.stdin)
        self.proc.stdin.close()
        self.frames = frames
        self.thread = threading.Thread(target=self._pump, daemon=True,
                                       name=f"crossdock-ingest-reader-{part}")
        self.thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        while True:
            try:
                item = pickle.load(self.proc.stdout)
            except (EOFError, pickle.UnpicklingError, ValueError, OSError):
                self.errors.seek(0)
                tail = self.errors.read().decode(errors="replace").strip().splitlines()
                why = tail[-1] if tail else f"exit code {self.proc.wait()}"
                self.frames.put(("died", why))
                return
            self.frames.put(item)
            if item[0] != "batch":
                return

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.thread.join(timeout=10)
        self.errors.close()


def prepared_batches(export: Export, mapping: Mapping, drivers: frozenset[str] | None,
                     *, parts: int | None = None,
                     memory: MemorySpec | None = None) -> Iterator[Prepared]:
    """Batches read and validated by ``parts`` child processes (one slice of the table each,
    default: one per core, at most 2); fills ``export.counters``/``problems`` at the end, as
    iterating the rows here would have. With ``memory``, the rows carry their hashes and the
    records the store remembers come back as known rows.

    Each child is a plain ``python -m gateway.ingest.parallel`` (not multiprocessing: nothing of
    the parent's ``__main__`` or threads is copied or re-imported). A bounded queue between the
    children's pipes and this generator bounds how far the readers run ahead.
    """
    assert export.reopen is not None
    parts = parts or max(1, min(2, os.cpu_count() or 1))
    frames: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=4 * parts)
    readers = [_Reader(export.reopen, i, parts, mapping, drivers, memory, frames)
               for i in range(parts)]
    done = 0
    deleted = 0
    try:
        while done < parts:
            item = frames.get()
            if item[0] == "batch":
                yield item[1]
            elif item[0] == "done":
                done += 1
                deleted += int(item[1].get("deleted", 0))
                export.problems.extend(p for p in item[2] if p not in export.problems)
            elif item[0] == "died":
                raise SourceError(f"{export.location}: a reading process died: {item[1]}")
            else:
                raise SourceError(item[1])
        export.counters["deleted"] = deleted
    finally:
        for reader in readers:
            reader.close()
        while not frames.empty():  # let blocked pump threads finish
            frames.get_nowait()


if __name__ == "__main__":
    _child_main()
