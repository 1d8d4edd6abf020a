"""The shadow rollout: ``crossdock gateway run --shadow`` and ``crossdock gateway report``.

A shadow run ingests and merges as a normal run does (the scheduler's jobs, the same store),
but starts no broker and no MQTT link: nothing is published, so no tablet receives anything.
After every refresh it records (``gateway.store.shadow``) what each tablet would have been sent,
which conflicts the merge opened, and how old each source's data was. ``report`` turns those
records into one report per day in the depot's time zone:

* would-be conflicts, counted by field and by the pair (or set) of sources that disagree, and
  listed with every candidate's value, source, ``as_of`` and age when it was seen;
* legacy values the other sources contradict (the conflicts in which legacy is a side);
* each source's data age over the day (``as_of`` seen at each refresh: youngest, oldest);
* what the tablets would have been sent (stream entries per device).

A depot runs this for two weeks before it hands tablets to drivers; the report is what it reads.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from gateway.config import GatewayConfig
from gateway.store.core import Store
from gateway.store.devices import Entry
from gateway.store.listings import conflict_views, ensure_indexes
from gateway.store.shadow import ShadowConflict, ShadowStore
from gateway.timefmt import depot_zone

log = logging.getLogger(__name__)

Clock = Callable[[], _dt.datetime]


def record_refresh(store: Store, cfg: GatewayConfig, entries: dict[str, list[Entry]],
                   now: _dt.datetime) -> int:
    """Record one refresh of a shadow run; returns how many conflicts were new."""
    shadow = ShadowStore(store)
    new = 0
    with store.transaction():
        shadow.record_sends(now, {d: [e.order_id for e in es] for d, es in entries.items()})
        for view in conflict_views(store):
            for c in view.conflicts():
                new += shadow.record_conflict(ShadowConflict(
                    c.order_id, c.field, c.opened_at.isoformat(), now.isoformat(),
                    tuple(sorted({k.source for k in c.candidates})),
                    tuple({"source": k.source, "value": k.value, "as_of": k.as_of.isoformat(),
                           "age_s": round((now - k.as_of).total_seconds()),
                           "claim_id": k.claim_id} for k in c.candidates)))
        shadow.record_sources(now, [(s.claim_source, store.latest_as_of(s.claim_source))
                                    for s in cfg.sources])
    return new


class ShadowRunner:
    """The scheduler alone (no broker, no MQTT), recording after every refresh."""

    def __init__(self, cfg: GatewayConfig, *, clock: Clock | None = None) -> None:
        self.cfg = cfg
        self.clock = clock or (lambda: _dt.datetime.now(_dt.UTC))
        self.refreshes = 0
        self._lock = threading.Lock()
        self._scheduler: Any = None

    def on_run(self, _job: str, _summaries: object, entries: dict[str, list[Entry]]) -> None:
        with self._lock, Store(self.cfg.db_path) as store:
            new = record_refresh(store, self.cfg, entries, self.clock())
            self.refreshes += 1
        sent = sum(len(v) for v in entries.values())
        log.info("shadow: %d stream entries not sent, %d new would-be conflicts", sent, new)

    def start(self) -> None:
        from gateway.scheduler import GatewayScheduler  # apscheduler: +99 ms to start-up

        with Store(self.cfg.db_path) as store:  # the tables exist before the first report
            ShadowStore(store)
            ensure_indexes(store)
        sched = GatewayScheduler(self.cfg, clock=self.clock, on_run=self.on_run)
        sched.start()
        self._scheduler = sched
        for src in self.cfg.sources:
            sched.run_now(src.name)

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown()
            self._scheduler = None


def _day(iso: str, zone: ZoneInfo) -> str:
    return _dt.datetime.fromisoformat(iso).astimezone(zone).date().isoformat()


def report(store: Store, cfg: GatewayConfig, *, zone: ZoneInfo | None = None
           ) -> dict[str, Any]:
    """The shadow-rollout report: ``{"timezone", "days": [...]}``, one entry per day (depot
    time) on which the shadow run recorded anything, oldest first."""
    zone = zone or depot_zone(cfg)
    shadow = ShadowStore(store)
    days: dict[str, dict[str, Any]] = defaultdict(lambda: {
        "conflicts": [], "by_field": Counter(), "by_sources": Counter(),
        "by_field_and_sources": Counter(), "legacy_contradicted": [],
        "sources": defaultdict(list), "sends": Counter(), "refreshes": set()})
    for c in shadow.conflicts():
        d = days[_day(c.seen_at, zone)]
        d["conflicts"].append({"order_id": c.order_id, "field": c.field,
                               "opened_at": c.opened_at, "seen_at": c.seen_at,
                               "sources": list(c.sources), "candidates": list(c.candidates)})
        pair = " vs ".join(c.sources)
        d["by_field"][c.field] += 1
        d["by_sources"][pair] += 1
        d["by_field_and_sources"][(c.field, pair)] += 1
        legacy = [k for k in c.candidates if k["source"] == "legacy"]
        if legacy:
            d["legacy_contradicted"].append({
                "order_id": c.order_id, "field": c.field, "legacy_value": legacy[0]["value"],
                "legacy_as_of": legacy[0]["as_of"], "legacy_age_s": legacy[0]["age_s"],
                "others": [{"source": k["source"], "value": k["value"], "as_of": k["as_of"]}
                           for k in c.candidates if k["source"] != "legacy"]})
    for at, source, as_of in shadow.source_samples():
        d = days[_day(at, zone)]
        d["refreshes"].add(at)
        age = None if as_of is None else round(
            (_dt.datetime.fromisoformat(at) - _dt.datetime.fromisoformat(as_of)).total_seconds())
        d["sources"][source].append((at, as_of, age))
    for at, device, entries in shadow.sends():
        days[_day(at, zone)]["sends"][device] += entries
    out = []
    for day in sorted(days):
        d = days[day]
        sources = []
        for source, samples in sorted(d["sources"].items()):
            ages = [a for _at, _as_of, a in samples if a is not None]
            sources.append({"source": source, "samples": len(samples),
                            "last_as_of": samples[-1][1],
                            "youngest_age_s": min(ages) if ages else None,
                            "oldest_age_s": max(ages) if ages else None})
        out.append({
            "day": day,
            "would_be_conflicts": len(d["conflicts"]),
            "by_field": dict(sorted(d["by_field"].items())),
            "by_sources": dict(sorted(d["by_sources"].items())),
            "by_field_and_sources": [{"field": f, "sources": p, "count": n} for (f, p), n
                                     in sorted(d["by_field_and_sources"].items())],
            "conflicts": d["conflicts"],
            "legacy_contradicted": d["legacy_contradicted"],
            "source_ages": sources,
            "would_send": {"entries": sum(d["sends"].values()),
                           "by_device": dict(sorted(d["sends"].items()))},
            "refreshes": len(d["refreshes"]),
        })
    return {"timezone": zone.key, "days": out}
