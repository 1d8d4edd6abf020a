"""One run of a source: adapter → validation → quarantine → diff → claims, in one transaction.

``ingest_source`` is what ``crossdock gateway ingest`` and the scheduler call. For each input the
adapter has ready:

* a byte-identical input (same fingerprint, same mapping) is skipped without parsing;
* rows stream through the mapping's validator; good rows are staged, refused rows are kept with
  their reasons (nothing is dropped); the store then quarantines duplicate order ids (every
  row), diffs against the source's previous values and writes claims only for what changed;
* an input that cannot be read at all fails the run with a one-line error and changes nothing:
  the last good data stays;
* an incomplete input (an HTTP fan-out with failed calls) is recorded as partial, never merged;
* a source in ``shadow`` or ``approve`` mode writes proposals instead of claims.
"""

from __future__ import annotations

import datetime as _dt
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from gateway.config import GatewayConfig, SourceSection
from gateway.errors import GatewayError, NotReady, SourceError, StoreError
from gateway.ingest.base import Adapter, Export, Holding, RawRow
from gateway.ingest.mapping import Mapping, known_drivers, source_mapping
from gateway.ingest.parallel import (
    BATCH,
    Faults,
    MemorySpec,
    batches,
    merge_faults,
    prepare,
    prepared_batches,
    worth_it,
)
from gateway.ingest.validate import RowValidator, Valid
from gateway.store import records
from gateway.store.core import Store
from gateway.store.records import StaleMemory
from gateway.store.runs import (
    BadRow,
    HoldRule,
    SourceRun,
    StagedRow,
    applied_fingerprint,
    held,
    load_record,
)
from gateway.store.sql import store_error
from sync.host.version import package_version

Progress = Callable[[str, int, int | None], None]
"""Called with (phase, done so far, total or None): ``read`` (rows read and validated, of the
input's records) while streaming, ``diff`` (staged rows diffed and committed, of those that
differ) while writing claims."""


@dataclass(frozen=True)
class RunSummary:
    source: str
    status: str  # ok | degraded | suspect | skipped | partial | failed | not-ready | idle
    location: str = ""
    rows_read: int = 0
    rows_changed: int = 0
    rows_quarantined: int = 0
    rows_deleted: int = 0
    claims: int = 0
    error: str | None = None
    run_id: int | None = None
    held: dict[str, object] | None = None
    """For a ``suspect`` run: its hold (run_id, reason, rows_read, withdraw, live)."""
    rows_reused: int = 0
    """Rows read whose record held the bytes the source's last applied run read there: not
    decoded again, their values the source's unchanged ones (``gateway.store.records``)."""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def make_adapter(cfg: GatewayConfig, src: SourceSection) -> Adapter:
    """The adapter a source's section configures (its library is imported only when used)."""
    if src.kind == "foxpro":
        from gateway.ingest.foxpro import FoxProAdapter  # dbfread (the gateway extra): +15 ms

        return FoxProAdapter(src.name, cfg.path(src.path or ""), encoding=src.encoding)
    if src.kind == "csv":
        from gateway.ingest.csvdrop import CsvDropAdapter  # +10 ms

        path = cfg.path(src.path or "")
        folder, pattern = (path, "*.csv") if path.is_dir() or not path.suffix else (
            path.parent, path.name)
        return CsvDropAdapter(src.name, folder, pattern=pattern, encoding=src.encoding,
                              delimiter=src.delimiter, settle_seconds=src.settle_s,
                              done_marker=src.done_marker)
    if src.kind == "odbc":
        from gateway.ingest.odbc import OdbcAdapter  # pyodbc (the gateway extra): +8 ms

        return OdbcAdapter(src.name, src.connection or "", src.query or "")
    from gateway.ingest.http import HttpAdapter  # requests: +114 ms

    return HttpAdapter(src.name, src.url or "", endpoints=list(src.endpoints) or ["/proposals"],
                       token=src.token, timeout=src.timeout_s, rate=src.rate_per_s)


class _Adapters:
    """Adapters live as long as the gateway: a CSV folder remembers sizes between runs."""

    def __init__(self) -> None:
        self._cache: dict[str, Adapter] = {}

    def get(self, cfg: GatewayConfig, src: SourceSection) -> Adapter:
        # keyed by where the config lives and what the section says: two depots (or a changed
        # section) never share an adapter
        key = f"{cfg.base_dir}\0{src.model_dump_json()}"
        if key not in self._cache:
            self._cache[key] = make_adapter(cfg, src)
        return self._cache[key]


ADAPTERS = _Adapters()


def ingest_source(
    store: Store,
    cfg: GatewayConfig,
    src: SourceSection,
    *,
    now: Callable[[], _dt.datetime],
    progress: Progress | None = None,
    adapter: Adapter | None = None,
    parallel: bool | None = None,
    accept: int | None = None,
    actor: str | None = None,
) -> list[RunSummary]:
    """Run one source once; one summary per input it had ready (or one saying why none).

    ``parallel``: read and validate in a second process (None: for large files on a machine
    with more than one core; see gateway.ingest.parallel). ``accept``: apply the source's held
    (suspect) run with that id, as ``actor`` (audited), and nothing else."""
    started = now()
    if accept is not None:  # a person's command: what stops it is an error to them, not a run
        mapping = source_mapping(cfg, src)
        validator = RowValidator(mapping, drivers=known_drivers(cfg, mapping))
        return [_accept(store, src, mapping, validator, adapter or ADAPTERS.get(cfg, src),
                        accept, actor or "unknown", now, progress, parallel)]
    try:
        mapping = source_mapping(cfg, src)
        # an HTTP source without a mapping sends proposals: each states only what it changes
        validator = RowValidator(mapping, drivers=known_drivers(cfg, mapping),
                                 partial=src.mapping is None)
        adapter = adapter or ADAPTERS.get(cfg, src)
        summaries = _retry_quarantine(store, src, mapping, validator, now)
        for export in adapter.exports():
            summaries.append(_run_export(store, src, mapping, validator, export, now, progress,
                                         parallel))
            status = summaries[-1].status
            if status in ("ok", "degraded", "skipped", "partial"):
                adapter.done(export)
            elif status == "suspect" and isinstance(adapter, Holding):
                adapter.hold(export)
    except NotReady as exc:
        return [RunSummary(src.name, "not-ready", error=str(exc))]
    except sqlite3.Error as exc:  # the store itself failed (read-only, disk full): said so
        raise store_error(store.path, exc) from None
    except GatewayError as exc:
        if isinstance(exc, StoreError) and exc.fatal:
            raise  # no failed run can be recorded in a store that cannot be written
        finished = now()
        with store.transaction():
            run_id = store.record_run(src.claim_source, started_at=started, finished_at=finished,
                                      status="failed", error=str(exc))
        return [RunSummary(src.name, "failed", error=str(exc), run_id=run_id)]
    waiting = getattr(adapter, "skipped_not_ready", [])
    if not summaries:
        status = "not-ready" if waiting else "idle"
        return [RunSummary(src.name, status, error=("still being written: " + ", ".join(waiting))
                           if waiting else None)]
    return summaries


def _accept(
    store: Store,
    src: SourceSection,
    mapping: Mapping,
    validator: RowValidator,
    adapter: Adapter,
    run_id: int,
    actor: str,
    now: Callable[[], _dt.datetime],
    progress: Progress | None,
    parallel: bool | None,
) -> RunSummary:
    """Apply a held run: its input read again (it must still be byte-identical), no hold rule."""
    hold = held(store, src.claim_source)
    if hold is None or hold.run_id != run_id:
        waiting = f"; run {hold.run_id} is the one held" if hold else ""
        raise SourceError(f"source {src.name!r}: run {run_id} is not a held (suspect) run"
                          + waiting)
    exports: list[Export]
    if isinstance(adapter, Holding):
        found = adapter.held_export(hold.location)
        exports = [found] if found is not None else []
    else:
        exports = list(adapter.exports())
    for export in exports:
        if _fingerprint(export, mapping) == hold.fingerprint:
            summary = _run_export(store, src, mapping, validator, export, now, progress,
                                  parallel, accepted_by=actor)
            if summary.status in ("ok", "degraded"):
                adapter.done(export)
            return summary
    raise SourceError(f"source {src.name!r}: the export held by run {run_id} "
                      f"({hold.location}) is gone or has changed; nothing applied")


def _fingerprint(export: Export, mapping: Mapping) -> str | None:
    return f"{export.fingerprint}:{mapping.digest}" if export.fingerprint else None


def _run_export(
    store: Store,
    src: SourceSection,
    mapping: Mapping,
    validator: RowValidator,
    export: Export,
    now: Callable[[], _dt.datetime],
    progress: Progress | None,
    parallel: bool | None = None,
    *,
    accepted_by: str | None = None,
    memory: bool = True,
) -> RunSummary:
    """``memory``: read a large FoxPro table against the source's record memory (False: the
    run found it changed under it, reads every record again and leaves a memory anew)."""
    source = src.claim_source
    started = now()
    fingerprint = _fingerprint(export, mapping)
    hold = held(store, source)
    if accepted_by is None and hold is not None and fingerprint == hold.fingerprint:
        # the held export again: still held, nothing new to record
        return RunSummary(src.name, "suspect", export.location, hold.rows_read,
                          error=f"held by run {hold.run_id}: {hold.reason}",
                          run_id=hold.run_id, held=hold.as_dict())
    if (accepted_by is None and hold is None and fingerprint is not None
            and fingerprint == applied_fingerprint(store, source, export.location)):
        # what is applied now, byte for byte (a file equal to an older run is read again;
        # with a hold waiting the file is read, so that restoring the good export clears it)
        with store.transaction():
            run_id = store.record_run(source, started_at=started, finished_at=now(),
                                      status="skipped", location=export.location,
                                      fingerprint=fingerprint)
        return RunSummary(src.name, "skipped", export.location, run_id=run_id)
    if parallel is None:
        parallel = worth_it(export)
    spec, context = None, None
    if parallel and src.mode not in ("shadow", "approve"):
        spec, context = _record_memory(store, source, export, mapping, validator.drivers,
                                       reuse=memory)
    run = SourceRun(store, source, started, export.location, fingerprint, memory=context)
    faults: Faults = {}
    try:
        if parallel and export.reopen is not None:
            prepared = prepared_batches(export, mapping, validator.drivers, memory=spec)
        else:
            prepared = (prepare(raws, validator) for raws in batches(export.rows, BATCH))
        for staged, bad, refused, batch_faults, known in prepared:
            run.stage_known(known)
            run.stage_prepared(staged)
            run.reject(bad, distinct_rows=refused)
            merge_faults(faults, batch_faults)
            if progress is not None:
                progress("read", run.rows_read, export.total)
        if progress is not None:
            progress("read", run.rows_read, run.rows_read)
        _refuse_if_most_fail_alike(export, faults, run.rows_read, src)
        info = run.commit(
            now=now(),
            as_of=mapping.as_of(started),
            mapping_digest=mapping.digest,
            deleted=export.counters.get("deleted", 0),
            complete=export.complete,
            problems=export.problems,
            proposals=src.mode if src.mode in ("shadow", "approve") else None,
            approval_window=_dt.timedelta(seconds=src.approval_window_s),
            on_progress=None if progress is None else (
                lambda n, total: progress("diff", n, total)),
            # an export (file, query) lists every live order; an HTTP source's proposals are
            # the optimizer's current plan, not an export a job can leave half-written
            hold=None if accepted_by is not None or src.kind == "http" else HoldRule(
                src.withdraw_share, tuple(export.suspect)),
            accepted_by=accepted_by,
        )
    except StaleMemory:  # another run of the source changed the memory: read it all again
        run.abort()
        return _run_export(store, src, mapping, validator, export, now, progress, parallel,
                           accepted_by=accepted_by, memory=False)
    except SourceError as exc:
        run.abort()
        with store.transaction():
            run_id = store.record_run(source, started_at=started, finished_at=now(),
                                      status="failed", location=export.location,
                                      error=str(exc))
        return RunSummary(src.name, "failed", export.location, error=str(exc), run_id=run_id)
    now_held = held(store, source) if info.status == "suspect" else None
    return RunSummary(
        src.name, info.status, export.location, info.rows_read, info.rows_changed,
        info.rows_quarantined, info.rows_deleted, info.claims, info.error, info.run_id,
        now_held.as_dict() if now_held is not None else None, run.rows_known,
    )


def _record_memory(store: Store, source: str, export: Export, mapping: Mapping,
                   drivers: frozenset[str] | None, *,
                   reuse: bool) -> tuple[MemorySpec | None, str | None]:
    """The reading processes' use of the source's record memory, and the run's context: a
    FoxPro table only (its records are fixed bytes). Without a remembered memory under this
    context (or ``reuse`` False) the readers only hash, so that the run leaves one."""
    if export.layout is None or export.reopen is None:
        return None, None
    context = records.context(export.layout, mapping.digest, drivers, package_version())
    remembered = reuse and records.stored_context(store.conn, source) == context
    return MemorySpec(export.layout, source, str(store.path) if remembered else None), context


def _refuse_if_most_fail_alike(export: Export, faults: Faults, rows_read: int,
                               src: SourceSection) -> None:
    """Most rows failing the same way at the byte level is the file, not dirt in it: refused
    in one line, with the encoding its bytes most likely are."""
    if not faults or not rows_read:
        return
    kind, (count, *samples) = max(faults.items(), key=lambda item: item[1][0])
    if count <= src.refuse_share * rows_read:
        return
    name = Path(export.location).name or export.location
    hint = ""
    if kind == "undecodable bytes":
        from gateway.ingest.dbf_header import likely_encoding

        guess = likely_encoding(samples)
        configured = src.encoding
        hint = (f"; the file is likely {guess}: set the source's encoding = \"{guess}\""
                if guess else f"; it is not {configured}: set the source's encoding")
    raise SourceError(f"{name}: {count} of {rows_read} rows fail the same way ({kind}), "
                      f"more than {100 * src.refuse_share:.0f} %: refused, nothing applied{hint}")


def _retry_quarantine(
    store: Store,
    src: SourceSection,
    mapping: Mapping,
    validator: RowValidator,
    now: Callable[[], _dt.datetime],
) -> list[RunSummary]:
    """Rows quarantined under an earlier mapping are validated again under this one.

    Rows that pass now become claims through the same diff as any run (a run of their own,
    located "quarantine re-try"); rows that still fail stay, with today's reason.
    """
    source = src.claim_source
    records = store.open_quarantine_records(source, mapping.digest)
    if not records:
        return []
    started = now()
    run = SourceRun(store, source, started, "quarantine re-try", None)
    good: list[StagedRow] = []
    bad: list[BadRow] = []
    seen_rows: set[tuple[str, int]] = set()
    for _qid, location, row, record in records:
        if (location, row) in seen_rows:
            continue
        seen_rows.add((location, row))
        result = validator.validate(RawRow(row, load_record(record)))
        if isinstance(result, Valid):
            good.append(StagedRow(row, result.order_id, result.values, record))
        else:
            bad.extend(BadRow(row, result.order_id, p.field, p.raw, p.reason, record)
                       for p in result.problems)
    run.stage(good)
    run.reject(bad, distinct_rows=len(seen_rows) - len(good))
    info = run.commit(now=now(), as_of=mapping.as_of(started), mapping_digest=mapping.digest,
                      partial_diff=True)
    return [RunSummary(src.name, info.status, "quarantine re-try", info.rows_read,
                       info.rows_changed, info.rows_quarantined, 0, info.claims, None,
                       info.run_id)]
