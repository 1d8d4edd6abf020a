"""Claim sets decoded: a stored claim set row (``Store._claim_rows``' columns) back into the
claims it holds, all of them or only those a merge can read, or into a ``sync.merge.OneSet``.
Exports ``parse_rows``, ``build_claims``, ``one_set``, ``claims_to_merge``, ``merge_inputs``."""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

from gateway.store.sql import parse_time
from sync.merged import OneSet
from sync.model import Claim, trusted


def merge_inputs(rows_by_order: dict[str, list[tuple[Any, ...]]]
                 ) -> dict[str, OneSet | list[Claim]]:
    """``Store.merge_inputs`` for the orders' claim set rows (``Store._claim_rows``): every
    row's values parsed in one ``json.loads`` (a first ingest's orders have one row each, the
    call per row was a fifth of reading them), each time text once."""
    flat = [row for rows in rows_by_order.values() for row in rows]
    vals = json.loads("[" + ",".join([row[8] for row in flat]) + "]")
    times: dict[str, _dt.datetime] = {}
    out: dict[str, OneSet | list[Claim]] = {}
    at = 0
    for order_id, rows in rows_by_order.items():
        mine = vals[at:at + len(rows)]
        at += len(rows)
        if len(rows) == 1 and rows[0][7]:  # one present set: ``one_set`` without the search
            row = rows[0]
            as_of = times.get(row[4])
            if as_of is None:
                as_of = times[row[4]] = parse_time(row[4])
            received = times.get(row[5])
            if received is None:
                received = times[row[5]] = parse_time(row[5])
            out[order_id] = OneSet(row[0], row[1], mine[0], as_of, received)
            continue
        one = one_set(rows, mine)
        if one is None:
            based = [() if row[9] == "[]" else tuple(json.loads(row[9])) for row in rows]
            out[order_id] = claims_to_merge(order_id, rows, (mine, based))
        else:
            out[order_id] = one
    return out


def parse_rows(rows: list[tuple[Any, ...]]
            ) -> tuple[list[dict[str, Any]], list[tuple[str, ...]]]:
    """Each claim set row's values and ``based_on``, parsed."""
    return ([json.loads(row[8]) for row in rows],
            [() if row[9] == "[]" else tuple(json.loads(row[9])) for row in rows])


def build_claims(order_id: str, rows: list[tuple[Any, ...]],
            parsed: tuple[list[dict[str, Any]], list[tuple[str, ...]]] | None = None,
            wanted: set[tuple[int, str]] | None = None) -> list[Claim]:
    """The claims of one order's claim set rows (``Store._claim_rows``; ``parsed``: their
    ``parse_rows`` values, if read already): every (row, field), or the ``wanted`` ones. Our own
    rows, validated when they were stored: built without validation."""
    vals, based = parse_rows(rows) if parsed is None else parsed
    claims: list[Claim] = []
    for n, row in enumerate(rows):
        set_id, source, _order, rev, as_of, rec, hlc, present, _vals, _based = row
        as_of_t, rec_t, live, based_on = parse_time(as_of), parse_time(rec), bool(present), based[n]
        for field, value in vals[n].items():
            if wanted is None or (n, field) in wanted:
                claims.append(trusted(
                    Claim, claim_id=f"{set_id}#{field}", order_id=order_id, field=field,
                    value=value, present=live, source=source, source_rev=rev, as_of=as_of_t,
                    received_at=rec_t, based_on=based_on, hlc=hlc))
    return claims


def one_set(rows: list[tuple[Any, ...]], vals: list[dict[str, Any]]) -> OneSet | None:
    """The rows' ``OneSet``: one source, whose latest set (by hlc, no tie) is present and
    claims every field its other sets do; None when the rows are not that."""
    source = rows[0][1]
    latest = 0
    for n in range(1, len(rows)):
        if rows[n][1] != source:
            return None
        if rows[n][6] > rows[latest][6]:
            latest = n
    row = rows[latest]
    if not row[7]:
        return None
    fields = vals[latest].keys()
    for n in range(len(rows)):
        if n != latest and (rows[n][6] == row[6] or not vals[n].keys() <= fields):
            return None
    return OneSet(row[0], source, vals[latest], parse_time(row[4]), parse_time(row[5]))


def claims_to_merge(order_id: str, rows: list[tuple[Any, ...]],
                     parsed: tuple[list[dict[str, Any]], list[tuple[str, ...]]] | None = None
                     ) -> list[Claim]:
    """``Store.claims_to_merge`` for one order's claim set rows (as its query reads them;
    ``parsed``: their ``parse_rows`` values, if read already)."""
    vals, based = parse_rows(rows) if parsed is None else parsed
    wanted: set[tuple[int, str]] = set()  # (row, field) of each claim to build
    by_source: dict[str, list[int]] = {}
    for n, row in enumerate(rows):
        by_source.setdefault(row[1], []).append(n)
    for ns in by_source.values():
        if len(ns) == 1:
            wanted.update((ns[0], field) for field in vals[ns[0]])
        elif len({rows[n][6] for n in ns}) == len(ns):
            # distinct hlcs: a field's latest claim is in the latest set that has the field
            covered: set[str] = set()
            for n in sorted(ns, key=lambda n: rows[n][6], reverse=True):
                fields = vals[n].keys() - covered
                wanted.update((n, field) for field in fields)
                covered |= fields
        else:  # equal hlcs: rule 2's whole key, (hlc, claim id), field by field
            best: dict[str, tuple[tuple[str, str], int]] = {}
            for n in ns:
                set_id, hlc = rows[n][0], rows[n][6]
                for field in vals[n]:
                    key = (hlc, f"{set_id}#{field}")
                    found = best.get(field)
                    if found is None or key > found[0]:
                        best[field] = (key, n)
            wanted.update((n, field) for field, (_key, n) in best.items())
    if any(based):  # rule 4 reads the claims a built claim names, and the ones they name
        index = {row[0]: n for n, row in enumerate(rows)}
        todo = [n for n, _field in wanted]
        while todo:
            for cid in based[todo.pop()]:
                set_id, _sep, field = cid.rpartition("#")
                m = index.get(set_id)
                if m is not None and field in vals[m] and (m, field) not in wanted:
                    wanted.add((m, field))
                    todo.append(m)
    return build_claims(order_id, rows, (vals, based), wanted)
