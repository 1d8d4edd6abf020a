"""Merged views in the gateway store: the dirty queue (orders whose view must be rebuilt),
the views themselves (the body in the wire's compact form, its digest, drivers, escalation
deadline and rule inputs) and what the refresh compares a new view with.

``ViewStore`` holds their SQL, on the ``Store``'s connection; ``Store`` is one.
"""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3
from collections.abc import Iterable, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any

from gateway.store.sql import canonical_json, iso, rows_in, text_digest
from sync.merged import Merged
from sync.model import OrderView


def mark_dirty(conn: sqlite3.Connection, order_ids: Iterable[str]) -> None:
    """The orders' views are to be rebuilt (by the next refresh)."""
    conn.executemany("INSERT OR IGNORE INTO dirty(order_id) VALUES(?)", ((o,) for o in order_ids))


class ViewStore:
    """SQL for the dirty queue and the merged views."""

    conn: sqlite3.Connection

    def mark_dirty(self, order_ids: Iterable[str]) -> None:
        mark_dirty(self.conn, order_ids)

    def take_dirty(self, limit: int = 2000) -> list[str]:
        """Up to ``limit`` dirty orders, by order id, no longer dirty (in one statement)."""
        rows = self.conn.execute(
            "DELETE FROM dirty WHERE order_id IN (SELECT order_id FROM dirty ORDER BY order_id "
            "LIMIT ?) RETURNING order_id", (limit,)).fetchall()
        return sorted([r[0] for r in rows])

    def dirty_count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM dirty").fetchone()[0])

    def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version``: changes when another connection commits."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def mark_due(self, now: _dt.datetime) -> int:
        """Orders whose open conflict reached its escalation deadline become dirty."""
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO dirty(order_id) SELECT order_id FROM views "
            "WHERE deadline IS NOT NULL AND deadline <= ?",
            (iso(now),),
        )
        return cur.rowcount

    def view(self, order_id: str) -> OrderView | None:
        row = self.conn.execute("SELECT body FROM views WHERE order_id=?", (order_id,)).fetchone()
        return None if row is None else OrderView.model_validate_json(row[0])

    def view_states(self, order_ids: Iterable[str]) -> dict[str, tuple[str, str, str | None]]:
        """What ``put_views`` compares a new view with, for many orders in one query per 500:
        order id -> (digest, drivers JSON, deadline); orders without a view are left out."""
        return {oid: (digest, drivers, deadline) for oid, digest, drivers, deadline in rows_in(
            self.conn,
            "SELECT order_id, digest, drivers, deadline FROM views WHERE order_id IN ({marks})",
            order_ids)}

    def put_views(self, items: Sequence[tuple[Merged, tuple[str, str, str | None] | None]]
                  ) -> list[bool]:
        """Store orders' merged views, each with its stored state as ``view_states`` read it
        (None: no view yet), in one statement; per item, False when the view is identical
        to the stored one (not written).

        The body is stored in the wire's compact form (defaults left out, as ``sync.codec``
        encodes), so a stream entry can carry it as it is; beside it, the view's rule inputs,
        so a route's rules are checked without parsing its views."""
        rows: list[tuple[str, str, str, str, str | None, str]] = []
        out: list[bool] = []
        for merged, old in items:
            body = merged.body
            digest = text_digest(body)
            deadline = None if merged.deadline is None else iso(merged.deadline)
            drivers = merged.drivers
            drivers_json = ("[]" if not drivers else  # json.dumps(sorted(drivers)), as it writes
                            f"[{encode_basestring_ascii(drivers[0])}]" if len(drivers) == 1 else
                            json.dumps(sorted(drivers)))
            if old is not None and old == (digest, drivers_json, deadline):
                out.append(False)
                continue
            rows.append((merged.order_id, body, digest, drivers_json, deadline,
                         canonical_json(merged.inputs)))
            out.append(old is None or old[0] != digest or old[1] != drivers_json)
        self.conn.executemany(
            "INSERT INTO views(order_id, body, digest, drivers, deadline, rules) "
            "VALUES(?,?,?,?,?,?) "
            "ON CONFLICT(order_id) DO UPDATE SET body=excluded.body, digest=excluded.digest, "
            "drivers=excluded.drivers, deadline=excluded.deadline, rules=excluded.rules", rows)
        return out

    def views(self, order_ids: Iterable[str]) -> dict[str, OrderView]:
        return {oid: OrderView.model_validate_json(body)
                for oid, body in self.view_bodies(order_ids).items()}

    def view_bodies(self, order_ids: Iterable[str]) -> dict[str, str]:
        """The stored views' JSON, unparsed (as ``views`` returns them parsed)."""
        return dict(rows_in(
            self.conn, "SELECT order_id, body FROM views WHERE order_id IN ({marks})", order_ids))

    def view_rules(self, order_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The stored views' rule inputs (``sync.rules.rule_inputs``), parsed from their small
        column: all ``sync.rules.check_inputs`` needs."""
        return {oid: json.loads(rules) for oid, rules in rows_in(
            self.conn, "SELECT order_id, rules FROM views WHERE order_id IN ({marks})",
            order_ids)}

    def conflict_views(self) -> list[OrderView]:
        rows = self.conn.execute(
            "SELECT body FROM views WHERE body LIKE '%\"state\":\"conflict\"%' ORDER BY order_id"
        ).fetchall()
        return [OrderView.model_validate_json(r[0]) for r in rows]
