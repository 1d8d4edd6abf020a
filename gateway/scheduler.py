"""Periodic work on apscheduler 3: each source's polling, the write-back flush, escalations.

``build_scheduler(cfg, store_path=..., now=...)`` (or ``GatewayScheduler(cfg, clock=...)``, whose
store defaults to the config's) returns a ``GatewayScheduler`` (not started)
holding one apscheduler ``BackgroundScheduler`` with these jobs:

=================  ===========================================  ================================
job id             trigger                                      does
=================  ===========================================  ================================
``source:NAME``    the source's ``cron`` (CronTrigger.from_     ``ingest_source`` then
                   crontab) or ``interval_s`` (default 300 s)   ``refresh`` (or
                                                                ``hand_refresh``); ``on_run(NAME,
                                                                summaries, entries)``
``@writeback``     every 60 s (only with a ``[writeback]``)     ``flush_writeback``
``@escalation``    every 30 s                                   ``refresh`` (or mark due and
                                                                ``hand_refresh``): conflicts past
                                                                their deadline put stops on hold;
                                                                ``on_run("@escalation", [],
                                                                entries)`` when it changed any
=================  ===========================================  ================================

Rules of this module:

* Every job has ``coalesce=True`` (runs missed while the process slept become one),
  ``max_instances=1`` and a ``misfire_grace_time``. A run due while the previous one of the same
  job is still running is skipped by apscheduler; the skip is logged with the job's name and
  counted in ``GatewayScheduler.skipped`` (job id -> count).
* Positions live in the store (source runs, fingerprints, the write-back queue), never in
  apscheduler's job store: the default memory store is used, and every job is safe to re-run.
* Under ``gateway run`` the jobs get ``hand_refresh`` (the service's ``request_refresh``): a
  merge done here would write stream entries no one publishes; the service's worker merges and
  publishes at once instead.
* Each run opens its own ``Store`` (SQLite connections belong to one thread) and closes it.
* A crossdock error in a job is logged as one line and counted in ``errors``; the job runs again
  at its next time.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    JobEvent,
)
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from gateway.config import GatewayConfig, SourceSection
from gateway.errors import ConfigError, StoreError
from gateway.ingest.base import Adapter
from gateway.ingest.pipeline import RunSummary, ingest_source
from gateway.store.core import Store
from gateway.streams.views import refresh
from gateway.writeback.flush import flush_writeback
from sync.errors import CrossdockError

__all__ = [
    "DEFAULT_INTERVAL_S",
    "ESCALATION_JOB",
    "WRITEBACK_JOB",
    "GatewayScheduler",
    "OnRun",
    "build_scheduler",
    "source_job_id",
]

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 300.0
WRITEBACK_JOB = "@writeback"
WRITEBACK_INTERVAL_S = 60.0
ESCALATION_JOB = "@escalation"
ESCALATION_INTERVAL_S = 30.0
MISFIRE_GRACE_S = 60

OnRun = Callable[[str, Sequence[RunSummary], dict[str, list[Any]]], None]
"""``on_run(source, summaries, entries)``: after a source's run (or an escalation that changed
views) with the new stream entries per device, e.g. to publish them."""


def source_job_id(name: str) -> str:
    return f"source:{name}"


class GatewayScheduler:
    """The gateway's jobs on one BackgroundScheduler, with skip and error counters."""

    def __init__(
        self,
        cfg: GatewayConfig,
        *,
        clock: Callable[[], _dt.datetime],
        store_path: Path | None = None,
        on_run: OnRun | None = None,
        adapters: dict[str, Adapter] | None = None,
        writeback_interval_s: float = WRITEBACK_INTERVAL_S,
        escalation_interval_s: float = ESCALATION_INTERVAL_S,
        hand_refresh: Callable[[str], None] | None = None,
    ) -> None:
        """``hand_refresh(reason)``: the jobs only write (claims; escalations marked due) and
        hand the merge to whoever publishes its entries (the gateway service's worker); without
        it they merge themselves and give the entries to ``on_run``."""
        self.cfg = cfg
        self.hand_refresh = hand_refresh
        self.store_path = Path(store_path) if store_path is not None else cfg.db_path
        self.now = clock
        self.on_run = on_run
        self.adapters = dict(adapters or {})
        self._lock = threading.Lock()
        self.skipped: Counter[str] = Counter()
        """Runs skipped because the previous run of the same job was still going, per job id."""
        self.errors: Counter[str] = Counter()
        self.runs: Counter[str] = Counter()
        self.fatal: StoreError | None = None
        """Set when a job found the store cannot be written at all (``StoreError.fatal``)."""
        self.scheduler = BackgroundScheduler(
            timezone=_dt.UTC,
            job_defaults={"coalesce": True, "max_instances": 1,
                          "misfire_grace_time": MISFIRE_GRACE_S},
        )
        self.scheduler.add_listener(self._on_skip, EVENT_JOB_MAX_INSTANCES)
        self.scheduler.add_listener(self._on_done, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        for src in cfg.sources:
            self.scheduler.add_job(self._run_source, _trigger(src), args=(src.name,),
                                   id=source_job_id(src.name), name=source_job_id(src.name))
        if cfg.writeback is not None:
            self.scheduler.add_job(self._run_writeback,
                                   IntervalTrigger(seconds=writeback_interval_s),
                                   id=WRITEBACK_JOB, name=WRITEBACK_JOB)
        self.scheduler.add_job(self._run_escalation,
                               IntervalTrigger(seconds=escalation_interval_s),
                               id=ESCALATION_JOB, name=ESCALATION_JOB)

    # --- control --------------------------------------------------------------------------

    def start(self, paused: bool = False) -> None:
        self.scheduler.start(paused=paused)

    def shutdown(self, wait: bool = True) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=wait)

    def get_jobs(self) -> list[Any]:
        return list(self.scheduler.get_jobs())

    def run_now(self, source: str) -> None:
        """Run a source's job at once, through the scheduler (so an overlap is still skipped).

        ``source`` is a source name, or ``WRITEBACK_JOB`` / ``ESCALATION_JOB``."""
        job_id = source if source.startswith("@") else source_job_id(source)
        job = self.scheduler.get_job(job_id)
        if job is None:
            raise ConfigError(f"no scheduled job for {source!r}")
        job.modify(next_run_time=_dt.datetime.now(_dt.UTC))

    def skipped_total(self) -> int:
        with self._lock:
            return sum(self.skipped.values())

    # --- the jobs -------------------------------------------------------------------------

    def _run_source(self, name: str) -> None:
        src = self.cfg.source(name)
        try:
            with Store(self.store_path) as store:
                summaries = ingest_source(store, self.cfg, src, now=self.now,
                                          adapter=self.adapters.get(name))
                entries = {} if self.hand_refresh is not None else refresh(
                    store, self.cfg.merge_policy(), self.now())
        except CrossdockError as exc:
            self._error(source_job_id(name), exc)
            return
        for s in summaries:
            if s.status == "failed":
                log.warning("source %s: run failed: %s", name, s.error)
            elif s.status == "suspect":
                log.warning("source %s: export held as suspect: %s", name, s.error)
        if self.hand_refresh is not None:  # nothing dirty: the worker's refresh is a count
            self.hand_refresh("ingest")
        if self.on_run is not None:
            self.on_run(name, summaries, entries)

    def _run_writeback(self) -> None:
        try:
            with Store(self.store_path) as store:
                summary = flush_writeback(store, self.cfg, self.now())
        except CrossdockError as exc:
            self._error(WRITEBACK_JOB, exc)
            return
        for line in summary.refused:
            log.warning("write-back refused result %s", line)

    def _run_escalation(self) -> None:
        try:
            with Store(self.store_path) as store:
                if self.hand_refresh is not None:
                    with store.transaction():
                        due = store.mark_due(self.now())
                    if due:
                        self.hand_refresh("escalation")
                    return
                entries = refresh(store, self.cfg.merge_policy(), self.now())
        except CrossdockError as exc:
            self._error(ESCALATION_JOB, exc)
            return
        if entries and self.on_run is not None:
            self.on_run(ESCALATION_JOB, [], entries)

    # --- listeners ------------------------------------------------------------------------

    def _error(self, job_id: str, exc: BaseException) -> None:
        with self._lock:
            self.errors[job_id] += 1
        if isinstance(exc, StoreError) and exc.fatal:
            self.fatal = exc  # the store cannot be written: ``gateway run`` stops with it
            return
        log.error("%s: %s", job_id, exc)

    def _on_skip(self, event: JobEvent) -> None:
        with self._lock:
            self.skipped[event.job_id] += 1
            count = self.skipped[event.job_id]
        log.warning("%s: run skipped, the previous run is still going (%d skipped so far)",
                    event.job_id, count)

    def _on_done(self, event: JobEvent) -> None:
        with self._lock:
            self.runs[event.job_id] += 1
            if getattr(event, "exception", None) is not None:
                self.errors[event.job_id] += 1


def _trigger(src: SourceSection) -> CronTrigger | IntervalTrigger:
    if src.cron is not None:
        try:
            return CronTrigger.from_crontab(src.cron, timezone=_dt.UTC)
        except ValueError as exc:
            raise ConfigError(f"source {src.name!r}: cron {src.cron!r}: {exc}") from None
    return IntervalTrigger(seconds=src.interval_s or DEFAULT_INTERVAL_S)


def build_scheduler(
    cfg: GatewayConfig,
    *,
    store_path: Path,
    now: Callable[[], _dt.datetime],
    on_run: OnRun | None = None,
    adapters: dict[str, Adapter] | None = None,
) -> GatewayScheduler:
    """The gateway's scheduler, not yet started (``.start()``; ``.scheduler`` is apscheduler's
    BackgroundScheduler). ``adapters`` replaces a source's adapter by name (a test's seam)."""
    return GatewayScheduler(cfg, clock=now, store_path=store_path, on_run=on_run,
                            adapters=adapters)
