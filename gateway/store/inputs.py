"""The merge's inputs in the gateway store: claim sets (one row per source statement and
order: the fields it changed; the claim id of field ``f`` in set ``S`` is ``S#f``) and
resolutions, written (each marks its order dirty for the view refresh) and read back as claims
(``gateway.store.claims`` decodes the rows).

``InputStore`` holds their SQL, on the ``Store``'s connection; ``Store`` is one.
"""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from gateway.store.claims import build_claims, claims_to_merge, merge_inputs
from gateway.store.sql import iso, rows_in
from gateway.store.views import mark_dirty
from sync.merged import OneSet
from sync.model import Claim, Resolution, canonical


class InputStore:
    """SQL for claim sets and resolutions."""

    conn: sqlite3.Connection

    def add_claim_set(
        self,
        *,
        set_id: str,
        source: str,
        order_id: str,
        vals: dict[str, Any],
        as_of: _dt.datetime,
        received_at: _dt.datetime,
        hlc: str,
        present: bool = True,
        based_on: Sequence[str] = (),
        source_rev: str = "",
        run_id: int | None = None,
    ) -> bool:
        """Store one claim set; False when its id is already stored (an echo: no-op)."""
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO claim_sets(set_id, source, order_id, run_id, source_rev, "
            "as_of, received_at, hlc, present, vals, based_on) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
            (set_id, source, order_id, run_id, source_rev, iso(as_of), iso(received_at), hlc,
             int(present), canonical(vals), json.dumps(list(based_on))),
        )
        if cur.rowcount:
            mark_dirty(self.conn, [order_id])
        return bool(cur.rowcount)

    def claims_for(self, order_ids: Iterable[str]) -> dict[str, list[Claim]]:
        """Every claim stored for these orders (history included)."""
        return {order_id: build_claims(order_id, rows)
                for order_id, rows in self._claim_rows(order_ids).items()}

    def claims_to_merge(self, order_ids: Iterable[str]) -> dict[str, list[Claim]]:
        """The claims of ``claims_for`` that an order's merge can depend on, built without the
        rest: each source's latest claim per field (merge rule 2), and every claim of the
        order named, transitively, in those claims' ``based_on`` (rule 4 follows them). The
        others are history that no rule reads, so ``merge_order`` over these gives the view
        it gives over all of the order's claims."""
        return {order_id: claims_to_merge(order_id, rows)
                for order_id, rows in self._claim_rows(order_ids).items()}

    def merge_inputs(self, order_ids: Iterable[str]) -> dict[str, OneSet | list[Claim]]:
        """``claims_to_merge``, or the order's ``sync.merge.OneSet`` where it is one (its
        view is then built without the claims: ``Merged.of_one_set``)."""
        return merge_inputs(self._claim_rows(order_ids))

    def _claim_rows(self, order_ids: Iterable[str]) -> dict[str, list[tuple[Any, ...]]]:
        """The orders' claim set rows, by order (the columns ``build_claims`` reads)."""
        by_order: dict[str, list[tuple[Any, ...]]] = {}
        for row in rows_in(
            self.conn,
            "SELECT set_id, source, order_id, source_rev, as_of, received_at, hlc, present, "
            "vals, based_on FROM claim_sets WHERE order_id IN ({marks})", order_ids,
        ):
            by_order.setdefault(row[2], []).append(row)
        return by_order

    def claims_name_driver(self, driver: str) -> bool:
        """Whether some stored claim set names ``driver`` as an order's driver."""
        row = self.conn.execute(
            "SELECT 1 FROM claim_sets, json_each(claim_sets.vals) WHERE json_each.key='driver' "
            "AND json_each.value=? LIMIT 1", (driver,)).fetchone()
        return row is not None

    def add_resolution(self, resolution: Resolution) -> bool:
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO resolutions(resolution_id, order_id, field, body) "
            "VALUES(?,?,?,?)",
            (resolution.resolution_id, resolution.order_id, resolution.field,
             resolution.model_dump_json()),
        )
        if cur.rowcount:
            mark_dirty(self.conn, [resolution.order_id])
        return bool(cur.rowcount)

    def resolutions_for(self, order_ids: Iterable[str]) -> dict[str, list[Resolution]]:
        out: dict[str, list[Resolution]] = {}
        for (body,) in rows_in(
            self.conn, "SELECT body FROM resolutions WHERE order_id IN ({marks})", order_ids
        ):
            res = Resolution.model_validate_json(body)
            out.setdefault(res.order_id, []).append(res)
        return out
