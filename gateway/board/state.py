"""What the board shows, read through the gateway's library (no SQL here) into plain data.

``board_state(store, cfg, now)`` is one dict (the page's sections and ``/api/state``'s JSON):
conflicts with every candidate, proposals held for approval, refused driver actions, tablets,
sources' freshness, quarantine and the audit log of decisions. ``words`` says a value as the
page shows it (ages: ``gateway.timefmt.age_text``, the CLI's words too).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any
from zoneinfo import ZoneInfo

from gateway.config import GatewayConfig
from gateway.store import listings
from gateway.store.core import Store
from gateway.store.events import EventStore
from gateway.streams.status import source_freshness

QUARANTINE_LIMIT = 200
REFUSED_LIMIT = 200
"""The newest refused driver actions the board shows (``gateway refused`` lists them all)."""


def words(value: Any) -> str:
    """A claim's value in words: ``D7``, ``no value``, ``start 08:00, end 10:00``."""
    if value is None:
        return "no value"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k} {words(v)}" for k, v in value.items()) or "nothing"
    if isinstance(value, list):
        return ", ".join(words(v) for v in value) or "nothing"
    return str(value)


def cadence_words(cadence: str | None) -> str:
    """A source's cadence as a dispatcher says it: ``0 0 * * *`` -> ``nightly at 00:00``,
    ``30 6 * * *`` -> ``daily at 06:30``, ``*/5 * * * *`` -> ``every 5 min``; anything else
    as written (``no cadence`` for none)."""
    if not cadence:
        return "no cadence"
    parts = cadence.split()
    if len(parts) == 5 and parts[2:] == ["*", "*", "*"]:
        minute, hour = parts[0], parts[1]
        if minute.isdigit() and hour.isdigit():
            at = f"{int(hour):02d}:{int(minute):02d}"
            return f"nightly at {at}" if int(hour) < 5 else f"daily at {at}"
        if minute.startswith("*/") and hour == "*" and minute[2:].isdigit():
            return f"every {int(minute[2:])} min"
    return cadence


def _time(value: str | _dt.datetime | None) -> _dt.datetime | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, _dt.datetime) else _dt.datetime.fromisoformat(value)


def local(value: str | _dt.datetime | None, zone: ZoneInfo) -> str:
    """A moment in the depot's zone, ``2026-12-01 21:40``; ``never`` for none."""
    moment = _time(value)
    return "never" if moment is None else f"{moment.astimezone(zone):%Y-%m-%d %H:%M}"


def board_state(store: Store, cfg: GatewayConfig, now: _dt.datetime) -> dict[str, Any]:
    views = listings.conflict_views(store)
    conflicts = []
    for view in views:
        for c in view.conflicts():
            conflicts.append({
                "order_id": c.order_id, "field": c.field, "opened_at": c.opened_at.isoformat(),
                "deadline": c.deadline.isoformat(), "escalated": c.escalated,
                "hold": view.hold,
                "candidates": [{"source": k.source, "value": k.value, "words": words(k.value),
                                "as_of": k.as_of.isoformat(), "claim_id": k.claim_id,
                                "age_s": round((now - k.as_of).total_seconds())}
                               for k in c.candidates],
            })
    held = listings.proposals(store)
    current = store.views(sorted({p.order_id for p in held}))
    proposals = []
    for p in held:
        known = current.get(p.order_id)
        now_values = {f: words(known.value(f)) if known is not None else "not known yet"
                      for f in p.values}
        proposals.append({**p.as_dict(), "words": {f: words(v) for f, v in p.values.items()},
                          "current": now_values})
    decisions = _decisions(store)
    quarantine = store.quarantine()
    events = EventStore(store)  # the listing `crossdock gateway refused` shows, newest first
    refused = events.refused_events(newest_first=True, limit=REFUSED_LIMIT)
    counts = events.refused_counts()
    return {
        "at": now.isoformat(),
        "depot": cfg.depot,
        "conflicts": conflicts,
        "proposals": proposals,
        "refused": [vars(e) for e in refused],
        "refused_total": counts["refused_events"],
        "refused_open": counts["refused_open"],
        "tablets": [{**vars(t), "behind": t.behind} for t in listings.tablets(store)],
        "sources": source_freshness(store, cfg),
        "quarantine": [vars(q) for q in quarantine[:QUARANTINE_LIMIT]],
        "quarantine_total": len(quarantine),
        "decisions": decisions,
    }


def _decisions(store: Store) -> list[dict[str, Any]]:
    """The audit log's decisions, each with the claims the person saw (a resolution's
    ``seen``; an override's from its resolution) in words."""
    decisions = listings.decisions(store)
    overrides = {f"override:{d['detail'].get('command_id')}": d for d in decisions
                 if d["action"] == "assign" and d["detail"].get("override")}
    for rid, res in listings.resolution_seen(store, list(overrides)).items():
        overrides[rid]["detail"]["seen"] = res.get("seen", [])
    claims = listings.claim_summaries(
        store, [cid for d in decisions for cid in d["detail"].get("seen", [])])
    for d in decisions:
        d["seen"] = []
        for cid in d["detail"].get("seen", []):
            claim = claims.get(cid, {"source": cid.partition(":")[0], "value": None,
                                     "as_of": None})
            d["seen"].append({"claim_id": cid, **claim, "words": words(claim["value"]),
                              "chosen": cid == d["detail"].get("chose")})
    return decisions
