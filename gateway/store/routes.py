"""Drivers' routes in the gateway store: which orders are on each driver's route
(``route_members``) and the rule warnings each driver's devices were last sent per order
(``route_warnings``: only orders that have some), so a route sync builds bodies only for the
orders that changed or whose warnings did.

``RouteStore`` holds their SQL, on a Store's connection (and inside its transactions);
``DeviceStore`` (``gateway.store.devices``) offers the same methods.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from gateway.store.core import Store
from gateway.store.sql import rows_in
from gateway.store.views import RULES, RULES_JOIN, rules_of


class RouteStore:
    """SQL for routes and the warnings sent for them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.conn = store.conn

    def set_route_members(self, order_id: str, old: Sequence[str], new: Sequence[str]) -> None:
        self.set_routes_members([(order_id, old, new)])

    def set_routes_members(self, changes: Sequence[tuple[str, Sequence[str], Sequence[str]]]
                           ) -> None:
        """``set_route_members`` for many orders in two statements (a first ingest moves every
        order onto a route: two statements per order were 5 % of its merge)."""
        self.conn.executemany("DELETE FROM route_members WHERE driver=? AND order_id=?",
                              [(d, o) for o, old, new in changes for d in old if d not in new])
        self.conn.executemany("INSERT OR IGNORE INTO route_members(driver, order_id) VALUES(?,?)",
                              [(d, o) for o, _old, new in changes for d in new])

    def route(self, driver: str) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT order_id FROM route_members WHERE driver=? ORDER BY order_id", (driver,))]

    def route_rules(self, driver: str) -> dict[str, dict[str, Any]]:
        """The driver's route with each view's rule inputs (``Store.view_rules``), in order id
        order: one query for both. The parsed route is kept on the Store per driver and reused
        where the stored texts are unchanged (a route is re-checked on every change of any of
        its orders, usually one or two of hundreds): callers must not modify it."""
        texts: dict[str, str] = dict(self.conn.execute(
            f"SELECT m.order_id, {RULES} FROM route_members m JOIN views v USING (order_id) "
            f"{RULES_JOIN} WHERE m.driver=? ORDER BY m.order_id", (driver,)).fetchall())
        cached = self.store.rules_cache.get(driver)
        if cached is not None and cached[0].keys() == texts.keys():
            old_texts, old_parsed = cached
            moved = texts.items() - old_texts.items()
            if not moved:
                return old_parsed
            parsed = dict(old_parsed)  # same keys: the order id order is kept
            for order_id, text in moved:
                parsed[order_id] = rules_of(text)
        else:
            parsed = {o: rules_of(t) for o, t in texts.items()}
        self.store.rules_cache[driver] = (texts, parsed)
        return parsed

    def route_rules_of(self, driver: str, order_ids: Iterable[str]
                       ) -> dict[str, dict[str, Any] | None]:
        """``route_rules`` for the given orders only, None for those not on the route."""
        ids = sorted(set(order_ids))
        out: dict[str, dict[str, Any] | None] = dict.fromkeys(ids)
        for order_id, text in rows_in(
                self.conn,
                f"SELECT m.order_id, {RULES} FROM route_members m JOIN views v USING (order_id) "
                f"{RULES_JOIN} WHERE m.driver=? AND m.order_id IN ({{marks}})", ids, driver):
            out[order_id] = rules_of(text)
        return out

    def route_warnings(self, driver: str) -> dict[str, str]:
        """The warnings last sent for the driver's orders: order id -> warnings JSON (orders
        without warnings have no row)."""
        return dict(self.conn.execute(
            "SELECT order_id, warnings FROM route_warnings WHERE driver=?", (driver,)).fetchall())

    def route_warnings_of(self, driver: str, order_ids: Iterable[str]) -> dict[str, str]:
        """``route_warnings`` for the given orders only."""
        return dict(rows_in(
            self.conn, "SELECT order_id, warnings FROM route_warnings WHERE driver=? "
            "AND order_id IN ({marks})", order_ids, driver))

    def set_route_warnings(self, driver: str, changed: dict[str, str | None]) -> None:
        """Record the driver's new warnings per order (None: the order has none now)."""
        self.conn.executemany(
            "INSERT INTO route_warnings(driver, order_id, warnings) VALUES(?,?,?) "
            "ON CONFLICT(driver, order_id) DO UPDATE SET warnings=excluded.warnings",
            [(driver, o, w) for o, w in changed.items() if w is not None])
        self.conn.executemany(
            "DELETE FROM route_warnings WHERE driver=? AND order_id=?",
            [(driver, o) for o, w in changed.items() if w is None])

    def drivers_with_routes(self) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT driver FROM route_members ORDER BY driver")]
