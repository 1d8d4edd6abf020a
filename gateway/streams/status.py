"""What the gateway says about itself: per-source freshness and health (``gateway/status``)."""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

from gateway.config import GatewayConfig
from gateway.errors import ConfigError
from gateway.ingest.mapping import load_mapping
from gateway.store.core import RunInfo, Store
from gateway.store.runs import APPLIED, Hold, held


def _last_applied(store: Store, source: str) -> RunInfo | None:
    runs = [store.last_run(source, status=s) for s in APPLIED]
    found = [r for r in runs if r is not None]
    return max(found, key=lambda r: r.run_id) if found else None


def _held_text(hold: Hold) -> str:
    return (f"suspect: run {hold.run_id} held ({hold.reason}): {hold.rows_read} rows read, "
            f"would withdraw {hold.withdraw} of {hold.live} live orders; nothing applied until "
            f"`crossdock gateway ingest --accept {hold.run_id}` or a later normal export")


def source_freshness(store: Store, cfg: GatewayConfig) -> list[dict[str, Any]]:
    """One row per configured source: as_of, cadence, last run and its counts, last error."""
    out = []
    for src in cfg.sources:
        name = src.claim_source
        last = store.last_run(name)
        last_ok = _last_applied(store, name)
        hold = held(store, name)
        cadence: str | None = src.cron or (f"every {src.interval_s:g} s" if src.interval_s
                                           else None)
        cadence_s = None
        if src.mapping is not None:
            try:
                mapping = load_mapping(cfg.path(src.mapping))
                cadence = mapping.source.cadence or cadence
                cadence_s = mapping.cadence_seconds()
            except ConfigError as exc:  # a broken mapping is reported here, not fatal
                cadence = f"mapping unreadable: {exc}"
        failed = last is not None and last.status == "failed"
        status = "suspect" if hold is not None else (last.status if last else None)
        out.append({
            "name": src.name,
            "source": name,
            "kind": src.kind,
            "mode": src.mode,
            "as_of": store.latest_as_of(name),
            "cadence": cadence,
            "cadence_s": cadence_s,
            "last_run_at": last.finished_at if last else None,
            "last_run_status": last.status if last else None,
            "last_ok_at": last_ok.finished_at if last_ok else None,
            "rows_read": last_ok.rows_read if last_ok else 0,
            "rows_changed": last_ok.rows_changed if last_ok else 0,
            "rows_quarantined": last_ok.rows_quarantined if last_ok else 0,
            "orders": store.source_order_count(name),
            # a hold is the error a person must see (gateway/status carries only this field;
            # older agents refuse unknown ones)
            "last_error": (_held_text(hold) if hold is not None else
                           last.error if failed and last else None),
            # ok | degraded | suspect (an export held: nothing of it applied) | failed | ...
            "status": status,
            "held": hold.as_dict() if hold is not None else None,
        })
    return out


BROKER_LINK = "broker_link"
"""The store's meta key where ``gateway run`` records its broker link's state."""


def record_link(store: Store, *, url: str, now: _dt.datetime, state: str,
                problem: str | None) -> None:
    """``gateway run``'s link to the broker: ``connected``, ``not connected`` (with the
    problem: does not answer, not authorized) or ``stopped``, since ``now``."""
    with store.transaction():
        store.set_meta(BROKER_LINK, json.dumps({"url": url, "state": state, "problem": problem,
                                                "since": now.isoformat()}))


def broker_link(store: Store) -> dict[str, Any] | None:
    """The link state ``gateway run`` recorded last, or None if it never ran."""
    text = store.meta(BROKER_LINK)
    if not text:
        return None
    data: dict[str, Any] = json.loads(text)
    return data
