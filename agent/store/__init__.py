"""The tablet's SQLite store (the only package that imports sqlite3 / sqlite-utils).

Modules (one ``Store`` class, one table family per module):
    base    -- StoreBase: open, the schema, one transaction (``_tx``), meta values
    stream  -- StreamTables: views and the receiver's ``seq`` (entries, snapshots)
    outbox  -- OutboxTables: driver actions, their outbox rows, acks, refusals, dismissals
    meta    -- MetaTables: the HLC clock, the gateway's status, presence, counters

Tables:

=============  ================================================================================
table          what
=============  ================================================================================
views          order_id PK, seq of the entry that set it, the OrderView as JSON (defaults left out)
meta           key PK, JSON value: last applied seq and the receiver state, HLC clock, the
               gateway's last status (source freshness), last sync time, presence, counters
outbox         event_id PK, created_at, payload (the encoded envelope, resent byte for byte),
               attempts, last_sent_at; insertion order is rowid order
local_actions  event_id PK, order_id, action, at, acked, view_seen, event JSON: the driver's
               actions overlaid on the route until the gateway's view reflects them
refused        event_id PK, order_id, action, event JSON, reason, refused_at, dismissed_at,
               dismissal_id: actions the gateway turned down, moved here from the outbox (never
               deleted); shown until the driver dismisses them, kept after that
=============  ================================================================================

Every public write is ONE ``BEGIN IMMEDIATE`` transaction (an entry and its ``seq`` together; an
action and its outbox row together). The connection is in driver autocommit mode so Python never
opens a transaction behind our back.

Durability is chosen per transaction (WAL; ``PRAGMA synchronous`` can only change outside a
transaction, so ``_tx`` sets it just before ``BEGIN`` when the level differs from the last one):

* ``synchronous=FULL`` (the default, every write but the stream's): COMMIT waits for the WAL to
  reach the disk, so a driver action in the outbox survives a power cut — it exists nowhere
  else until the gateway acks it.
* ``synchronous=NORMAL`` for applying stream entries and snapshots: COMMIT does not fsync. The
  database stays consistent, but a power cut may lose the last few commits. Each entry is
  committed together with its ``seq``, so what is lost is a tail of the stream, and the agent's
  ``seq`` goes back with it: on restart it asks for ``seq > last`` and the gateway replays
  exactly that tail (or sends a snapshot). Nothing is applied twice or skipped. The gateway may
  have been told a higher ``Applied`` seq; that only drives compaction, and a request behind
  the compacted log is answered by a snapshot. The next FULL commit (an action) syncs the WAL,
  these entries included.

A ``Store`` is not thread-safe by itself: its owner (the ``Agent``) serialises calls with one
lock. Two processes on one file (``agent run`` and ``agent act``) are fine: writes wait for
each other (busy timeout) instead of failing.
"""

from __future__ import annotations

from agent.store.base import SCHEMA_VERSION
from agent.store.meta import MetaTables
from agent.store.outbox import OutboxTables
from agent.store.stream import StreamTables

__all__ = ["SCHEMA_VERSION", "Store"]


class Store(StreamTables, OutboxTables, MetaTables):
    """The tablet's durable state. Open with ``Store.open(path)``; ``close()`` when done.

    Each table family is one base class (see above); all share one
    connection and ``StoreBase._tx``."""
