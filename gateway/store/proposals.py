"""Proposals held back for dispatch (a source in ``shadow`` or ``approve`` mode; the rows are
written by ``gateway.store.runs``): read one, find a newer one, record a decision, list the
pending ones past their window. Exports ``Proposal``, ``get``, ``newer_than``, ``decide``,
``expired``."""

from __future__ import annotations

import datetime as _dt
from typing import NamedTuple

from gateway.store.core import Store


class Proposal(NamedTuple):
    proposal_id: str
    source: str
    order_id: str
    vals: str
    as_of: str
    created_at: str
    expires_at: str | None
    state: str


def get(store: Store, proposal_id: str) -> Proposal | None:
    row = store.conn.execute(
        "SELECT proposal_id, source, order_id, vals, as_of, created_at, expires_at, state "
        "FROM proposals WHERE proposal_id=?", (proposal_id,)).fetchone()
    return None if row is None else Proposal(*row)


def newer_than(store: Store, proposal: Proposal) -> str | None:
    """The id of a later proposal of the same source for the same order, if there is one."""
    row = store.conn.execute(
        "SELECT proposal_id FROM proposals WHERE order_id=? AND source=? AND created_at > ? "
        "LIMIT 1", (proposal.order_id, proposal.source, proposal.created_at)).fetchone()
    return None if row is None else str(row[0])


def decide(store: Store, proposal_id: str, state: str, *, by: str, at: _dt.datetime) -> None:
    store.conn.execute("UPDATE proposals SET state=?, decided_by=?, decided_at=? "
                       "WHERE proposal_id=?", (state, by, at.isoformat(), proposal_id))


def expired(store: Store, now: _dt.datetime) -> list[str]:
    """The pending proposals whose approval window ended by ``now``."""
    return [r[0] for r in store.conn.execute(
        "SELECT proposal_id FROM proposals WHERE state='pending' AND expires_at <= ?",
        (now.isoformat(),)).fetchall()]
