"""New set views, written in SQL: the orders of a refresh batch that have no view yet and
whose claims are one present claim set (a source's first export: every order) get their view
(``gateway.store.views.SetView``, a reference to the set) and their place on their driver's
route in three statements, without a row passing through Python.

A first ingest of a million orders spent 36 s in its refresh, a third of it in Python handing
each order's set id and driver from one statement to the next; SQLite does the same work in
place. Every other order of the batch (it has a view, or more than one claim set) is merged
as before (``gateway.streams.views``), and so is any later change to these.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import NamedTuple

from gateway.store.core import Store
from gateway.store.views import SET_DIGEST

_TABLE = ("CREATE TEMP TABLE IF NOT EXISTS new_set_views "
          "(order_id TEXT PRIMARY KEY, set_id TEXT NOT NULL, driver TEXT)")

_FIND = (
    # ``sync.merged.set_drivers``' rule: a driver is a non-empty string
    "INSERT INTO temp.new_set_views(order_id, set_id, driver) "
    "SELECT c.order_id, c.set_id, CASE json_type(c.vals, '$.driver') WHEN 'text' "
    "THEN nullif(json_extract(c.vals, '$.driver'), '') END FROM claim_sets c "
    "WHERE c.order_id IN (SELECT value FROM json_each(?1)) "
    "AND NOT EXISTS (SELECT 1 FROM views v WHERE v.order_id = c.order_id) "
    "GROUP BY c.order_id HAVING count(*) = 1 AND max(c.present) = 1")

_VIEWS = (
    # as ``ViewStore.put_views`` stores a SetView (drivers: ``json_array``, as it writes one)
    "INSERT INTO views(order_id, body, digest, drivers, deadline, rules, one_set) "
    f"SELECT order_id, '', '{SET_DIGEST}' || set_id, CASE WHEN driver IS NULL THEN '[]' "
    "ELSE json_array(driver) END, NULL, NULL, set_id FROM temp.new_set_views WHERE true")

_ROUTES = ("INSERT OR IGNORE INTO route_members(driver, order_id) "
           "SELECT driver, order_id FROM temp.new_set_views WHERE driver IS NOT NULL")


class NewSetViews(NamedTuple):
    """What ``put_new_set_views`` did not do, and whom it changed."""

    rest: list[str]
    """The batch's other orders, in its order: to merge as before."""
    drivers: dict[str, set[str]]
    """Each driver whose route gained orders -> those orders if the driver has an active
    device (to offer them), else an empty set."""


def put_new_set_views(store: Store, order_ids: Sequence[str]) -> NewSetViews:
    """Store the new set views among ``order_ids`` with their route members (in the caller's
    transaction); the rest of the batch and the drivers whose routes gained orders."""
    conn = store.conn
    ids = json.dumps(list(order_ids))
    conn.execute(_TABLE)
    conn.execute("DELETE FROM temp.new_set_views")
    if not conn.execute(_FIND, (ids,)).rowcount:
        return NewSetViews(list(order_ids), {})
    conn.execute(_VIEWS)
    conn.execute(_ROUTES)
    rest = [r[0] for r in conn.execute(
        "SELECT j.value FROM json_each(?) j WHERE j.value NOT IN "
        "(SELECT order_id FROM temp.new_set_views) ORDER BY j.key", (ids,))]
    drivers: dict[str, set[str]] = {d: set() for (d,) in conn.execute(
        "SELECT DISTINCT driver FROM temp.new_set_views WHERE driver IS NOT NULL")}
    for driver, order_id in conn.execute(
            "SELECT n.driver, n.order_id FROM temp.new_set_views n WHERE n.driver IN "
            "(SELECT driver FROM devices WHERE state = 'active')"):
        drivers[driver].add(order_id)
    return NewSetViews(rest, drivers)
