"""``gateway ingest`` (one pass over the sources, with a progress bar per phase) and
``gateway writeback`` (driver results back to the legacy system)."""

from __future__ import annotations

import getpass
import sys
import time
from pathlib import Path
from typing import Any

import click

from gateway.cli.common import config_option, emit, json_option, open_depot, utc_now
from gateway.errors import ConfigError
from gateway.writeback.flush import flush_writeback

_PHASES = {"read": "read+validate", "diff": "diff+commit", "merge": "merge"}


class _PhaseBars:
    """One click progress bar per phase of a source's run (read+validate, diff+commit, then
    the merge), each with its total, percentage, rate and time left; on a terminal only
    (click draws nothing when stderr is not one, and ``--json`` never asks for bars)."""

    def __init__(self, name: str, *, draw: bool, seconds: dict[str, float]) -> None:
        """``seconds``: each phase's wall time is added there (``--json`` reports it)."""

        self.name = name
        self.draw = draw
        self.seconds = seconds
        self.phase: str | None = None
        self.bar: Any = None
        self.pos = 0
        self.started = time.monotonic()  # the first phase starts with the run

    def __call__(self, phase: str, done: int, total: int | None) -> None:

        if phase != self.phase:
            self.close()
            self.phase = phase
            self.pos = 0
            if not self.draw:
                return
            self.bar = click.progressbar(
                length=max(total or 0, done, 1), label=f"{self.name}: {_PHASES[phase]}",
                file=sys.stderr, show_eta=True, show_percent=True, show_pos=True,
                item_show_func=lambda text: text)
            self.bar.__enter__()
        if self.bar is None:
            return
        if total and total > self.bar.length:
            self.bar.length = total
        step = max(0, min(done, self.bar.length) - self.pos)
        self.pos += step
        elapsed = max(time.monotonic() - self.started, 1e-6)
        self.bar.update(step, current_item=f"{done / elapsed:,.0f}/s")

    def close(self) -> None:

        now = time.monotonic()
        if self.phase is not None:
            self.seconds[self.phase] = self.seconds.get(self.phase, 0.0) + now - self.started
        self.started = now
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


EXIT_SUSPECT = 3
"""``gateway ingest``: an export was held as suspect (nothing of it applied)."""
EXIT_DEGRADED = 4
"""``gateway ingest``: a run was applied, but most of its rows were quarantined or none read."""


@click.command()
@config_option
@click.option("--source", "source_name", default=None, help="Run only this source.")
@click.option("--accept", "accept", type=int, default=None, metavar="RUN",
              help="Apply the held (suspect) run RUN, re-reading its unchanged export.")
@click.option("--by", "actor", default=None,
              help="Who accepts (recorded in the audit log; default: the login name).")
@json_option
def ingest(config_path: Path, source_name: str | None, accept: int | None, actor: str | None,
           as_json: bool) -> None:
    """One pass over the sources: read, validate, quarantine, diff to claims, merge.

    Exit 0: applied; 1: a source failed; 3: an export was held as suspect (nothing of it
    applied; accept it with --accept RUN); 4: degraded (most rows quarantined, or none read).
    """

    # the pipeline +63 ms to every command (adapters, validation), views +19 ms
    from gateway.ingest.pipeline import ingest_source
    from gateway.store.runs import held
    from gateway.streams.views import refresh

    cfg, store = open_depot(config_path)
    sources = [cfg.source(source_name)] if source_name else list(cfg.sources)
    if not sources:
        raise ConfigError(f"config {config_path}: no [[sources]] configured")
    show = sys.stderr.isatty() and not as_json
    results = []
    with store:
        if accept is not None:
            holding = [s for s in sources if (h := held(store, s.claim_source)) is not None
                       and h.run_id == accept]
            if not holding:
                raise ConfigError(f"run {accept} is not a held (suspect) run of "
                                  + (f"source {source_name!r}" if source_name else "any source")
                                  + "; `crossdock gateway sources` lists the held runs")
            sources = holding[:1]
        seconds: dict[str, float] = {}
        for src in sources:
            bars = _PhaseBars(src.name, draw=show, seconds=seconds)
            try:
                summaries = ingest_source(store, cfg, src, now=utc_now, progress=bars,
                                          accept=accept,
                                          actor=actor or (getpass.getuser() if accept else None))
            finally:
                bars.close()
            results.extend(summaries)
        merging = _PhaseBars("views", draw=show, seconds=seconds)
        merging("merge", 0, None)
        try:
            entries = refresh(store, cfg.merge_policy(), utc_now(),
                              on_progress=lambda n, total: merging("merge", n, total))
        finally:
            merging.close()
        conflicts = len(store.conflict_views())
    statuses = {r.status for r in results}
    if as_json:
        emit({"runs": [r.as_dict() for r in results], "open_conflicts": conflicts,
               "stream_entries": sum(len(v) for v in entries.values()),
               "phases_s": {k: round(v, 3) for k, v in seconds.items()}})
    else:
        for r in results:
            line = (f"{r.source}: {r.status}" + (f" {r.location}" if r.location else "")
                    + (f" — {r.rows_read} rows read, {r.rows_changed} changed, "
                       f"{r.rows_quarantined} quarantined, {r.rows_deleted} deleted, "
                       f"{r.claims} claims" if r.status in ("ok", "partial", "degraded")
                       else ""))
            if r.rows_reused and r.status in ("ok", "degraded"):
                line += f" ({r.rows_reused} unchanged records not decoded again)"
            if r.held:
                line += (f" — {r.held['rows_read']} rows read, would withdraw "
                         f"{r.held['withdraw']} of {r.held['live']} live orders")
            if r.error:
                line += f" — {r.error}"
            click.echo(line)
        click.echo(f"open conflicts: {conflicts}")
    if "failed" in statuses:
        sys.exit(1)
    if "suspect" in statuses:
        sys.exit(EXIT_SUSPECT)
    if "degraded" in statuses:
        sys.exit(EXIT_DEGRADED)


@click.command()
@config_option
@json_option
def writeback(config_path: Path, as_json: bool) -> None:
    """Write pending driver results where the legacy system imports them (once each)."""
    cfg, store = open_depot(config_path)
    with store:
        summary = flush_writeback(store, cfg, utc_now())
    if as_json:
        emit(summary.as_dict())
    else:
        click.echo(f"write-back ({summary.kind}) to {summary.target}: {summary.pending} pending, "
                   f"{summary.written} rows written, {summary.marked} marked written")
        for line in summary.refused:
            click.echo(f"refused {line}", err=True)
    if summary.refused:
        sys.exit(1)
