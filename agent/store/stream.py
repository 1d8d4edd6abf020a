"""The stream's tables: each order's view and the receiver's ``seq`` (``StreamTables``).

Stream entries and snapshots commit with ``synchronous=NORMAL`` (``_tx(durable=False)``):
a power cut loses a tail of the stream and its ``seq`` together, which the gateway replays.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from agent.errors import StoreError
from agent.store.base import StoreBase, stored_hlc
from sync.envelope import ViewChange
from sync.hlc import Hlc, observe
from sync.model import OrderView
from sync.streams import Receiver


def _view_text(view: OrderView) -> str:
    """A view as stored: its JSON with fields at their default left out, as the gateway sends
    and stores it (``OrderView.model_validate_json`` fills them in again: an equal view). A
    third smaller than every field spelled out, so a stream commit writes fewer pages."""
    return view.model_dump_json(exclude_defaults=True)



class StreamTables(StoreBase):
    """``views`` and meta's ``receiver``: what the stream brought."""

    def receiver(self) -> Receiver:
        """The stream receiver's state: last applied ``seq`` and the ``after`` last asked for.

        Once this Store has committed the receiver itself it answers from memory: the agent
        that follows the stream is the receiver's one writer (``agent act`` and other readers
        of the file never write it, so they always read it from the file). Each write still
        checks the stored ``seq`` inside its transaction."""
        if self._receiver is not None:
            return self._receiver
        state = self._get("receiver") or {}
        return Receiver(last=int(state.get("last", 0)), asked_after=state.get("asked_after"))

    def _put_receiver(self, receiver: Receiver) -> None:
        self._put("receiver", {"last": receiver.last, "asked_after": receiver.asked_after})

    def save_receiver(self, receiver: Receiver) -> None:
        """Store the receiver's state alone (after a gap: the ``after`` it asked for)."""
        self._receiver = None  # checked against the file
        with self._tx():
            if receiver.last != self.receiver().last:
                raise StoreError(
                    f"tablet store {self._path}: receiver moved from seq {self.receiver().last}"
                    f" to {receiver.last} without an entry"
                )
            self._put_receiver(receiver)
        self._receiver = receiver

    def apply_change(self, seq: int, order_id: str, view: OrderView | None, *, at: datetime
                     ) -> None:
        """Apply stream entry ``seq`` (must be last + 1): ``apply_changes`` with one entry and
        no stamp to observe (the agent hands every entry to ``apply_changes``)."""
        self.apply_changes((ViewChange(seq=seq, order_id=order_id, view=view),), at=at)

    def apply_changes(
        self, entries: Sequence[ViewChange], *, at: datetime,
        remote: Hlc | None = None, node: str = "", now_ms: int = 0,
    ) -> None:
        """Apply consecutive stream entries (the first must be last + 1) in ONE transaction:
        each order's view, and the last entry's ``seq``, together; all of them or none.

        An entry's ``view=None`` removes the order from the route. Local actions already
        acked for an order the entries touch are dropped (the gateway's view now reflects
        them); pending ones stay, marked as having seen a later view. The entries' stamp,
        ``remote`` (with our ``node`` and the wall clock ``now_ms``), is observed here
        (``sync.hlc.observe``) from the clock this transaction reads anyway, and stored in it:
        one COMMIT for the lot.

        Cheap per entry: an order changed twice keeps only its last entry (the same outcome
        in one transaction), the views are written with one ``executemany`` per kind, the
        local actions of all the orders are found with one query, meta is read and
        written once.
        """
        if not entries:
            return
        first, seq = entries[0].seq, entries[-1].seq
        final: dict[str, ViewChange] = {}  # order id -> its last entry: the same outcome
        for i, entry in enumerate(entries):
            if entry.seq != first + i:
                raise StoreError(
                    f"tablet store {self._path}: entries {[e.seq for e in entries]} "
                    "are not consecutive"
                )
            final[entry.order_id] = entry
        upserts: list[tuple[str, int, str]] = []
        removals: list[tuple[str]] = []
        for entry in final.values():
            if entry.view is None:
                removals.append((entry.order_id,))
            else:
                upserts.append((entry.order_id, entry.seq, _view_text(entry.view)))
        conn = self._db.conn
        self._receiver = None  # until these entries are committed
        with self._tx(durable=False):
            state = dict(conn.execute(
                "SELECT key, value FROM meta WHERE key IN ('receiver', 'hlc')").fetchall())
            last = int(json.loads(state.get("receiver", "{}")).get("last", 0))
            if first != last + 1:
                raise StoreError(
                    f"tablet store {self._path}: entry {first} does not follow last seq {last}"
                )
            if removals:
                conn.executemany("DELETE FROM views WHERE order_id = ?", removals)
            if upserts:
                conn.executemany(
                    "INSERT INTO views (order_id, seq, json) VALUES (?, ?, ?) "
                    "ON CONFLICT(order_id) DO UPDATE SET seq = excluded.seq, json = excluded.json",
                    upserts,
                )
            # the table holds only actions not yet reflected by a view (a handful): one read of
            # its order ids (an index scan) answers for every order of the batch
            touched = [row for row in conn.execute(
                "SELECT DISTINCT order_id FROM local_actions") if row[0] in final]
            if touched:
                conn.executemany(
                    "DELETE FROM local_actions WHERE order_id = ? AND acked = 1", touched
                )
                conn.executemany(
                    "UPDATE local_actions SET view_seen = 1 WHERE order_id = ?", touched
                )
            meta = {"receiver": {"last": seq, "asked_after": None},
                    "last_sync_at": at.isoformat()}
            if remote is not None:
                stored = stored_hlc(state.get("hlc"), node)
                hlc = observe(stored, remote, now_ms)
                if hlc > stored:
                    meta["hlc"] = str(hlc)
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [(key, json.dumps(value)) for key, value in meta.items()],
            )
        self._receiver = Receiver(last=seq, asked_after=None)

    def apply_snapshot(self, seq: int, views: Sequence[OrderView], *, at: datetime) -> None:
        """Replace every view with a snapshot taken at ``seq``; the stream resumes at seq + 1."""
        self._receiver = None  # until the snapshot is committed
        with self._tx(durable=False):
            self._db.execute("DELETE FROM views")
            for view in views:
                self._db.execute(
                    "INSERT INTO views (order_id, seq, json) VALUES (?, ?, ?) "
                    "ON CONFLICT(order_id) DO UPDATE SET seq = excluded.seq, json = excluded.json",
                    [view.order_id, seq, _view_text(view)],
                )
            self._db.execute("DELETE FROM local_actions WHERE acked = 1")
            self._db.execute("UPDATE local_actions SET view_seen = 1")
            self._put_receiver(Receiver(last=seq, asked_after=None))
            self._put("last_sync_at", at.isoformat())
        self._receiver = Receiver(last=seq, asked_after=None)

    def views(self) -> list[OrderView]:
        rows = self._db.execute("SELECT json FROM views ORDER BY order_id").fetchall()
        return [OrderView.model_validate_json(row[0]) for row in rows]

    def view(self, order_id: str) -> OrderView | None:
        row = self._db.execute("SELECT json FROM views WHERE order_id = ?", [order_id]).fetchone()
        return None if row is None else OrderView.model_validate_json(row[0])
