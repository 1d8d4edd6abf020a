"""Merged views in the gateway store: the dirty queue (orders whose view must be rebuilt),
the views themselves (the body in the wire's compact form, its digest, drivers, escalation
deadline and rule inputs) and what the refresh compares a new view with.

A view that is one claim set's values (``SetView``: one source, every field agreed on its
one candidate, ``sync.merged.Merged.of_one_set``) is stored as a reference to that set
(``one_set``; the body ``''``, no rule inputs): its body and rule inputs are built from the set
when read. A first ingest merges every order of an export to one, and writing each one's text
(1.8 KB: every field with its candidate) was most of that merge. Claim sets are never changed
or deleted, so the reference stays what the merge decided. Its digest is ``set:`` + set id.

``ViewStore`` holds their SQL, on the ``Store``'s connection; ``Store`` is one.
"""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3
from collections.abc import Iterable, Sequence
from json.encoder import encode_basestring
from typing import Any, NamedTuple

from gateway.errors import StoreError
from gateway.store.sql import canonical_json, iso, parse_time, rows_in, text_digest
from sync.merged import Merged, OneSet, settled_inputs
from sync.model import OrderView


class SetView(NamedTuple):
    """A one-set view as ``put_views`` stores it: the order, its claim set and its drivers."""

    order_id: str
    set_id: str
    drivers: list[str]


SET_DIGEST = "set:"
"""A set view's digest: this and its set id (the set is all its text depends on)."""

StoredView = Merged | SetView
"""What ``put_views`` stores: a merged view's text, or a one-set view (stored as its set)."""

_READ = ("SELECT v.order_id, v.body, v.one_set, c.source, c.vals, c.as_of, c.received_at "
         "FROM views v LEFT JOIN claim_sets c ON c.set_id = v.one_set ")
"""A stored view's body, or the claim set a one-set view is made of (``_body``)."""


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
        body = self.view_bodies([order_id]).get(order_id)
        return None if body is None else OrderView.model_validate_json(body)

    def view_states(self, order_ids: Iterable[str]) -> dict[str, tuple[str, str, str | None]]:
        """What ``put_views`` compares a new view with, for many orders in one query per 500:
        order id -> (digest, drivers JSON, deadline); orders without a view are left out."""
        return {oid: (digest, drivers, deadline) for oid, digest, drivers, deadline in rows_in(
            self.conn,
            "SELECT order_id, digest, drivers, deadline FROM views WHERE order_id IN ({marks})",
            order_ids)}

    def put_views(self, items: Sequence[tuple[StoredView, tuple[str, str, str | None] | None]]
                  ) -> list[bool]:
        """Store orders' merged views, each with its stored state as ``view_states`` read it
        (None: no view yet), in one statement; per item, False when the view is identical
        to the stored one (not written).

        The body is stored in the wire's compact form (defaults left out, as ``sync.codec``
        encodes), so a stream entry can carry it as it is; beside it, the view's rule inputs,
        so a route's rules are checked without parsing its views. A one-set view is stored as
        its set's id (the module's doc)."""
        rows: list[tuple[str, str, str, str, str | None, str | None, str | None]] = []
        out: list[bool] = []
        for merged, old in items:
            if isinstance(merged, SetView):
                set_id: str | None = merged.set_id
                body, digest, deadline, rules = "", SET_DIGEST + merged.set_id, None, None
            else:
                set_id, body = None, merged.body
                digest = text_digest(body)
                deadline = None if merged.deadline is None else iso(merged.deadline)
                rules = canonical_json(merged.inputs)
            drivers = merged.drivers
            drivers_json = ("[]" if not drivers else  # one as SQLite's json_array writes it
                            f"[{encode_basestring(drivers[0])}]" if len(drivers) == 1 else
                            json.dumps(sorted(drivers)))
            if old is not None and old == (digest, drivers_json, deadline):
                out.append(False)
                continue
            rows.append((merged.order_id, body, digest, drivers_json, deadline, rules, set_id))
            out.append(old is None or old[0] != digest or old[1] != drivers_json)
        self.conn.executemany(
            "INSERT INTO views(order_id, body, digest, drivers, deadline, rules, one_set) "
            "VALUES(?,?,?,?,?,?,?) "
            "ON CONFLICT(order_id) DO UPDATE SET body=excluded.body, digest=excluded.digest, "
            "drivers=excluded.drivers, deadline=excluded.deadline, rules=excluded.rules, "
            "one_set=excluded.one_set", rows)
        return out

    def views(self, order_ids: Iterable[str]) -> dict[str, OrderView]:
        return {oid: OrderView.model_validate_json(body)
                for oid, body in self.view_bodies(order_ids).items()}

    def view_bodies(self, order_ids: Iterable[str]) -> dict[str, str]:
        """The stored views' JSON, unparsed (as ``views`` returns them parsed)."""
        return {row[0]: _body(row) for row in rows_in(
            self.conn, _READ + "WHERE v.order_id IN ({marks})", order_ids)}

    def view_rules(self, order_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The stored views' rule inputs (``sync.rules.rule_inputs``), parsed from their small
        column, or from a one-set view's set: all ``sync.rules.check_inputs`` needs."""
        return {oid: rules_of(text) for oid, text in rows_in(
            self.conn, f"SELECT v.order_id, {RULES} FROM views v {RULES_JOIN} "
            "WHERE v.order_id IN ({marks})", order_ids)}

    def conflict_views(self) -> list[OrderView]:
        rows = self.conn.execute(
            "SELECT body FROM views WHERE body LIKE '%\"state\":\"conflict\"%' ORDER BY order_id"
        ).fetchall()
        return [OrderView.model_validate_json(r[0]) for r in rows]


RULES = "coalesce(v.rules, c.vals)"
"""A view's rule inputs as text (``rules_of`` parses it), for a query over ``views v``
joined with ``RULES_JOIN``: the stored inputs, or a one-set view's claim set values."""
RULES_JOIN = "LEFT JOIN claim_sets c ON c.set_id = v.one_set"


def rules_of(text: str) -> dict[str, Any]:
    """A ``RULES`` text's rule inputs: the stored inputs, or the settled ones of a set's
    values (``settled_inputs``, which gives stored inputs back as they are)."""
    return settled_inputs(json.loads(text))


def _body(row: tuple[Any, ...]) -> str:
    """A ``_READ`` row's body: as stored, or built from its one-set view's claim set."""
    order_id, body, set_id, source, vals, as_of, received_at = row
    if set_id is None:
        return str(body)
    if vals is None:
        raise StoreError(f"store: the view of order {order_id!r} is claim set {set_id!r}, "
                         "which the store does not hold")
    one = OneSet(set_id, source, json.loads(vals), parse_time(as_of), parse_time(received_at))
    return Merged.of_one_set(order_id, one).body
