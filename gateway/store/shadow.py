"""What a shadow run (``crossdock gateway run --shadow``) records in the gateway store.

* ``shadow_sends``: per refresh and device, how many stream entries the tablet would have been
  sent (the entries themselves are in the device's changelog, as in a normal run);
* ``shadow_conflicts``: each conflict the merge opened, once per (order, field, opened_at),
  with every candidate's source, value, ``as_of`` and age at the time it was seen;
* ``shadow_sources``: each source's ``as_of`` at every refresh, so the report can say how old
  each source's data was while the run went on.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.store.core import Store

SHADOW_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS shadow_sends (
        at TEXT NOT NULL, device TEXT NOT NULL, entries INTEGER NOT NULL,
        orders TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS shadow_conflicts (
        order_id TEXT NOT NULL, field TEXT NOT NULL, opened_at TEXT NOT NULL,
        seen_at TEXT NOT NULL, sources TEXT NOT NULL, candidates TEXT NOT NULL,
        PRIMARY KEY (order_id, field, opened_at)
    )""",
    """CREATE TABLE IF NOT EXISTS shadow_sources (
        at TEXT NOT NULL, source TEXT NOT NULL, as_of TEXT
    )""",
)


@dataclass(frozen=True)
class ShadowConflict:
    order_id: str
    field: str
    opened_at: str
    seen_at: str
    sources: tuple[str, ...]
    candidates: tuple[dict[str, Any], ...]


class ShadowStore:
    """SQL for the shadow run's records, on a Store's connection (inside its transactions)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.conn = store.conn
        for statement in SHADOW_SCHEMA:
            self.conn.execute(statement)

    def record_sends(self, at: _dt.datetime, sends: Mapping[str, list[str]]) -> None:
        """``device -> order ids`` of the entries a refresh would have sent each tablet."""
        self.conn.executemany(
            "INSERT INTO shadow_sends(at, device, entries, orders) VALUES(?,?,?,?)",
            [(at.isoformat(), device, len(orders), json.dumps(orders))
             for device, orders in sends.items() if orders])

    def record_conflict(self, conflict: ShadowConflict) -> bool:
        """False when this conflict (order, field, opened_at) was recorded before."""
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO shadow_conflicts(order_id, field, opened_at, seen_at, "
            "sources, candidates) VALUES(?,?,?,?,?,?)",
            (conflict.order_id, conflict.field, conflict.opened_at, conflict.seen_at,
             json.dumps(list(conflict.sources)), json.dumps(list(conflict.candidates),
                                                            default=str)))
        return bool(cur.rowcount)

    def record_sources(self, at: _dt.datetime, as_of: Iterable[tuple[str, str | None]]) -> None:
        self.conn.executemany("INSERT INTO shadow_sources(at, source, as_of) VALUES(?,?,?)",
                              [(at.isoformat(), s, a) for s, a in as_of])

    def sends(self) -> list[tuple[str, str, int]]:
        """``(at, device, entries)`` in time order."""
        return [(str(a), str(d), int(n)) for a, d, n in self.conn.execute(
            "SELECT at, device, entries FROM shadow_sends ORDER BY at, device")]

    def conflicts(self) -> list[ShadowConflict]:
        return [ShadowConflict(o, f, op, seen, tuple(json.loads(s)), tuple(json.loads(c)))
                for o, f, op, seen, s, c in self.conn.execute(
                    "SELECT order_id, field, opened_at, seen_at, sources, candidates "
                    "FROM shadow_conflicts ORDER BY seen_at, order_id, field")]

    def source_samples(self) -> list[tuple[str, str, str | None]]:
        """``(at, source, as_of)`` in time order."""
        return [(str(a), str(s), None if o is None else str(o)) for a, s, o in self.conn.execute(
            "SELECT at, source, as_of FROM shadow_sources ORDER BY at, source")]
