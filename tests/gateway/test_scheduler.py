"""The gateway's apscheduler jobs, run for real with short intervals; waits are Events."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_MAX_INSTANCES, JobEvent
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from legacy import (
    csv_source,
    dbf_order,
    foxpro_source,
    write_config,
    write_mapping,
    write_orders_dbf,
)

from gateway.errors import ConfigError
from gateway.ingest.base import Export, RawRow
from gateway.ingest.pipeline import RunSummary
from gateway.scheduler import (
    DEFAULT_INTERVAL_S,
    ESCALATION_JOB,
    WRITEBACK_JOB,
    GatewayScheduler,
    build_scheduler,
    source_job_id,
)
from gateway.store.core import Store

WAIT = 10.0


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class BlockingAdapter:
    """A source whose read waits until the test releases it (the outside world, held still)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = threading.Event()
        self.release = threading.Event()
        self.reads = 0

    def exports(self) -> Iterator[Export]:
        self.reads += 1
        self.started.set()
        self.release.wait(WAIT)
        yield Export(location="blocking", fingerprint=None,
                     rows=iter([RawRow(1, {"ORDER_ID": "O-1", "DRIVER_ID": "D1",
                                           "STATUS": "PLANNED", "LAT": "52.5", "LON": "13.4",
                                           "ETA": "2026-11-27 10:00", "NOTES": ""})]))

    def done(self, export: Export) -> None:
        return None


@pytest.fixture
def stopper() -> Iterator[list[GatewayScheduler]]:
    started: list[GatewayScheduler] = []
    yield started
    for sched in started:
        sched.shutdown(wait=True)


def test_each_source_gets_a_job_with_its_trigger_coalesce_and_one_instance(
    tmp_path: Path, stopper: list[GatewayScheduler]
) -> None:
    write_mapping(tmp_path / "legacy.mapping.toml")
    cfg = write_config(tmp_path, foxpro_source("nightly", cron="30 0 * * *"),
                       csv_source("drops", interval_s=45), csv_source("plain", folder="p"),
                       writeback='kind = "csv"\npath = "import"')
    sched = build_scheduler(cfg, store_path=cfg.db_path, now=_now)
    stopper.append(sched)
    sched.start(paused=True)  # job defaults apply once the scheduler has started
    jobs = {job.id: job for job in sched.get_jobs()}
    assert set(jobs) == {source_job_id("nightly"), source_job_id("drops"),
                         source_job_id("plain"), WRITEBACK_JOB, ESCALATION_JOB}
    assert isinstance(jobs["source:nightly"].trigger, CronTrigger)
    assert jobs["source:drops"].trigger.interval == dt.timedelta(seconds=45)
    assert jobs["source:plain"].trigger.interval == dt.timedelta(seconds=DEFAULT_INTERVAL_S)
    assert jobs[WRITEBACK_JOB].trigger.interval == dt.timedelta(seconds=60)
    assert jobs[ESCALATION_JOB].trigger.interval == dt.timedelta(seconds=30)
    for job in jobs.values():
        assert (job.coalesce, job.max_instances) == (True, 1)
        assert job.misfire_grace_time is not None and job.misfire_grace_time > 0
    assert isinstance(jobs[ESCALATION_JOB].trigger, IntervalTrigger)


def test_no_writeback_job_without_a_writeback_section(tmp_path: Path) -> None:
    write_mapping(tmp_path / "legacy.mapping.toml")
    cfg = write_config(tmp_path, csv_source())
    sched = build_scheduler(cfg, store_path=cfg.db_path, now=_now)
    assert WRITEBACK_JOB not in {job.id for job in sched.get_jobs()}


def test_a_bad_cron_expression_is_a_config_error(tmp_path: Path) -> None:
    write_mapping(tmp_path / "legacy.mapping.toml")
    cfg = write_config(tmp_path, csv_source(cron="61 * * * *"))
    with pytest.raises(ConfigError, match="cron '61 \\* \\* \\* \\*'"):
        build_scheduler(cfg, store_path=cfg.db_path, now=_now)


def test_overlapping_run_is_skipped_logged_and_counted(
    tmp_path: Path, stopper: list[GatewayScheduler], caplog: pytest.LogCaptureFixture
) -> None:
    write_mapping(tmp_path / "legacy.mapping.toml")
    cfg = write_config(tmp_path, csv_source("slow", interval_s=0.2))
    adapter = BlockingAdapter("slow")
    finished = threading.Event()
    runs: list[tuple[str, Sequence[RunSummary]]] = []

    def on_run(source: str, summaries: Sequence[RunSummary], entries: dict[str, Any]) -> None:
        runs.append((source, summaries))
        finished.set()

    sched = GatewayScheduler(cfg, clock=_now, on_run=on_run, adapters={"slow": adapter})
    skipped = threading.Event()
    sched.scheduler.add_listener(lambda event: skipped.set(), EVENT_JOB_MAX_INSTANCES)
    stopper.append(sched)
    sched.start()
    assert adapter.started.wait(WAIT)
    assert skipped.wait(WAIT), "a run due while the first was blocked was not skipped"
    assert adapter.reads == 1  # the overlapping runs never started
    adapter.release.set()
    assert finished.wait(WAIT)
    assert sched.skipped[source_job_id("slow")] >= 1
    assert sched.skipped_total() >= 1
    assert any("source:slow: run skipped" in r.getMessage() for r in caplog.records)
    source, summaries = runs[0]
    assert source == "slow" and summaries[0].status == "ok"


def test_run_now_ingests_in_the_jobs_own_store_and_reports_new_entries(
    tmp_path: Path, stopper: list[GatewayScheduler]
) -> None:
    write_mapping(tmp_path / "legacy.mapping.toml")
    write_orders_dbf(tmp_path / "export" / "orders.dbf", [dbf_order(1), dbf_order(2)])
    cfg = write_config(tmp_path, foxpro_source(cron="0 0 1 1 *"))
    got: list[list[RunSummary]] = []
    done = threading.Event()

    def on_run(source: str, summaries: Sequence[RunSummary], entries: dict[str, Any]) -> None:
        got.append(list(summaries))
        done.set()

    sched = build_scheduler(cfg, store_path=cfg.db_path, now=_now, on_run=on_run)
    stopper.append(sched)
    sched.start()
    sched.run_now("legacy")
    assert done.wait(WAIT)
    assert [s.status for s in got[0]] == ["ok"]
    with Store(cfg.db_path) as store:
        assert store.source_order_count("legacy") == 2
        assert store.view("ORD-000001") is not None  # refresh ran after the ingest


def test_positions_live_in_the_store_so_a_restarted_scheduler_skips_the_same_file(
    tmp_path: Path, stopper: list[GatewayScheduler]
) -> None:
    write_mapping(tmp_path / "legacy.mapping.toml")
    write_orders_dbf(tmp_path / "export" / "orders.dbf", [dbf_order(1)])
    cfg = write_config(tmp_path, foxpro_source(interval_s=3600))
    statuses: list[str] = []
    for _restart in range(2):
        done = threading.Event()

        def on_run(source: str, summaries: Sequence[RunSummary], entries: dict[str, Any],
                   done: threading.Event = done) -> None:
            statuses.extend(s.status for s in summaries)
            done.set()

        sched = build_scheduler(cfg, store_path=cfg.db_path, now=_now, on_run=on_run)
        stopper.append(sched)
        sched.start()
        sched.run_now("legacy")
        assert done.wait(WAIT)
        sched.shutdown()
    assert statuses == ["ok", "skipped"]


def test_escalation_and_writeback_jobs_run_without_sources_failing(
    tmp_path: Path, stopper: list[GatewayScheduler]
) -> None:
    write_mapping(tmp_path / "legacy.mapping.toml")
    cfg = write_config(tmp_path, csv_source(interval_s=3600),
                       writeback='kind = "csv"\npath = "import"')
    with Store(cfg.db_path) as store, store.transaction():
        store.add_result("r-1", "O-1", {"result_id": "r-1", "order_id": "O-1",
                                        "result": "delivered"}, _now())
    sched = build_scheduler(cfg, store_path=cfg.db_path, now=_now)
    executed: set[str] = set()
    both = threading.Event()

    def seen(event: JobEvent) -> None:
        executed.add(event.job_id)
        if {WRITEBACK_JOB, ESCALATION_JOB} <= executed:
            both.set()

    sched.scheduler.add_listener(seen, EVENT_JOB_EXECUTED)
    stopper.append(sched)
    sched.start()
    sched.run_now(WRITEBACK_JOB)
    sched.run_now(ESCALATION_JOB)
    assert both.wait(WAIT)
    assert sum(sched.errors.values()) == 0
    assert [p.name for p in (tmp_path / "import").glob("results-*.csv")]
    with Store(cfg.db_path) as store:
        assert store.pending_results() == []
