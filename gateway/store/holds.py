"""The hold of a suspect export: when a source run is held instead of applied (``HoldRule``),
what is recorded of it (``Hold``, kept in meta until a later applied run clears it) and the
fingerprint of what was last applied from a location. ``gateway.store.runs`` re-exports these
names; ``SourceRun.commit`` calls ``suspect``/``record_hold`` on its staged tables."""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass
from typing import Any

from gateway.store.core import RunInfo, Store
from gateway.store.sql import iso

_HOLD_KEY = "held:"


@dataclass(frozen=True)
class Hold:
    """A source's export held as suspect: nothing of it applied until a person accepts it."""

    run_id: int
    source: str
    location: str
    fingerprint: str | None
    reason: str
    rows_read: int
    withdraw: int
    live: int

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "location": self.location, "reason": self.reason,
                "rows_read": self.rows_read, "withdraw": self.withdraw, "live": self.live}


def held(store: Store, source: str) -> Hold | None:
    """The source's held export, if one is waiting (a later applied run clears it)."""
    text = store.meta(_HOLD_KEY + source)
    if not text:
        return None
    return Hold(**json.loads(text))


def clear_hold(store: Store, source: str) -> None:
    store.conn.execute("DELETE FROM meta WHERE key=?", (_HOLD_KEY + source,))


def applied_fingerprint(store: Store, source: str, location: str) -> str | None:
    """The fingerprint of the input last applied from ``location`` (a table's path, a drop's
    file): a file equal to it is what is applied now; one equal to an older run is not. Per
    location, so a glob's older drops, each unchanged, are not applied again in turn."""
    row = store.conn.execute(
        "SELECT fingerprint FROM runs WHERE source=? AND location=? "
        "AND status IN ('ok', 'degraded') ORDER BY run_id DESC LIMIT 1",
        (source, location),
    ).fetchone()
    return None if row is None else row[0]


@dataclass(frozen=True)
class HoldRule:
    """When a run is held instead of applied: it would withdraw more than ``withdraw_share``
    of the source's live orders, it holds no rows while orders are live, or its input says why
    (``suspect``: a header that disagrees with the file)."""

    withdraw_share: float = 0.2
    suspect: tuple[str, ...] = ()


def suspect(store: Store, source: str, rows_read: int,
            rule: HoldRule) -> tuple[str, int, int] | None:
    """(why, orders it would withdraw, live orders) when the run staged in ``temp.staged`` and
    ``temp.rejected`` must be held."""
    live = store.source_order_count(source)
    gone = int(store.conn.execute(
        "SELECT count(*) FROM source_state old WHERE old.source=? "
        "AND NOT EXISTS (SELECT 1 FROM temp.staged s WHERE s.order_id=old.order_id) "
        "AND NOT EXISTS (SELECT 1 FROM temp.rejected r WHERE r.order_id=old.order_id)",
        (source,),
    ).fetchone()[0]) if live else 0
    reasons = list(rule.suspect)
    if live and rows_read == 0:
        reasons.append("no records")
    if live and gone > rule.withdraw_share * live:
        reasons.append(f"would withdraw {gone} of {live} live orders "
                       f"({100 * gone / live:.0f} % > {100 * rule.withdraw_share:.0f} %)")
    if not reasons:
        return None
    return "; ".join(reasons), gone, live


def record_hold(store: Store, *, source: str, started_at: _dt.datetime, location: str,
                fingerprint: str | None, rows_read: int, now: _dt.datetime,
                as_of: _dt.datetime, deleted: int, reason: str, gone: int,
                live: int) -> RunInfo:
    """Record the staged run as ``suspect`` (nothing of it applied) and the source's hold."""
    conn = store.conn
    quarantined = int(conn.execute(
        "SELECT count(DISTINCT row) FROM temp.rejected").fetchone()[0])
    error = f"held: {reason}; nothing applied (accept with --accept RUN)"
    run_id = int(conn.execute(
        "INSERT INTO runs(source, started_at, finished_at, location, fingerprint, status, "
        "as_of, rows_read, rows_changed, rows_quarantined, rows_deleted, claims, error) "
        "VALUES(?,?,?,?,?,'suspect',?,?,?,?,?,0,?)",
        (source, iso(started_at), iso(now), location, fingerprint,
         iso(as_of), rows_read, gone, quarantined, deleted, error),
    ).lastrowid or 0)
    error = error.replace("RUN", str(run_id))
    conn.execute("UPDATE runs SET error=? WHERE run_id=?", (error, run_id))
    hold = Hold(run_id, source, location, fingerprint, reason, rows_read, gone, live)
    store.set_meta(_HOLD_KEY + source, json.dumps(asdict(hold)))
    info = store.last_run(source)
    assert info is not None  # written just now
    return info
