"""The driver's actions: overlay, outbox rows, acks, refusals, dismissals (``OutboxTables``).

An action and its outbox row are written in ONE ``synchronous=FULL`` transaction: it exists
nowhere else until the gateway acks it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pydantic import ValidationError

from agent.errors import StoreError
from agent.model import LocalAction, OutboxItem, RefusedAction
from agent.store.base import StoreBase
from sync.codec import encode
from sync.envelope import DriverEvent, DriverEventMsg


class OutboxTables(StoreBase):
    """``outbox``, ``local_actions`` and ``refused``."""

    def record_action(self, message: DriverEventMsg, *, created_at: datetime) -> None:
        """Record a driver action: its local overlay and its outbox row in ONE transaction."""
        event = message.body
        with self._tx():
            exists = self._db.execute(
                "SELECT 1 FROM outbox WHERE event_id = ?", [event.event_id]
            ).fetchone()
            if exists is not None:
                raise StoreError(f"tablet store {self._path}: event {event.event_id} exists")
            self._db.execute(
                "INSERT INTO outbox (event_id, created_at, payload, attempts) VALUES (?, ?, ?, 0)",
                [event.event_id, created_at.isoformat(), encode(message).decode()],
            )
            self._db.execute(
                "INSERT INTO local_actions (event_id, order_id, at, acked, view_seen, event) "
                "VALUES (?, ?, ?, 0, 0, ?)",
                [event.event_id, event.order_id, event.at.isoformat(), event.model_dump_json()],
            )

    def ack(self, event_ids: Iterable[str]) -> list[str]:
        """The gateway stored these events: delete their outbox rows. Returns the ids removed.

        A local action whose order already got a later view is dropped; the others stay as
        "sent" until the next view of their order arrives.
        """
        removed: list[str] = []
        with self._tx():
            for event_id in event_ids:
                cur = self._db.execute("DELETE FROM outbox WHERE event_id = ?", [event_id])
                if cur.rowcount:
                    removed.append(event_id)
                self._db.execute(
                    "DELETE FROM local_actions WHERE event_id = ? AND view_seen = 1", [event_id]
                )
                self._db.execute(
                    "UPDATE local_actions SET acked = 1 WHERE event_id = ?", [event_id]
                )
        return removed

    def refuse(self, refusals: Iterable[tuple[str, str]], *, at: datetime) -> list[str]:
        """The gateway refused these ``(event_id, reason)``: each outbox row moves to
        ``refused`` with its reason and ``at``, and its local overlay goes, all in ONE
        transaction. Returns the ids moved (an id no longer in the outbox is a resent ack)."""
        moved: list[str] = []
        with self._tx():
            for event_id, reason in refusals:
                row = self._db.execute(
                    "SELECT payload FROM outbox WHERE event_id = ?", [event_id]
                ).fetchone()
                if row is None:
                    continue
                event = DriverEventMsg.model_validate_json(row[0]).body
                self._db.execute(
                    "INSERT OR IGNORE INTO refused (event_id, order_id, action, event, reason, "
                    "refused_at) VALUES (?, ?, ?, ?, ?, ?)",
                    [event_id, event.order_id, event.action, event.model_dump_json(), reason,
                     at.isoformat()],
                )
                self._db.execute("DELETE FROM outbox WHERE event_id = ?", [event_id])
                self._db.execute("DELETE FROM local_actions WHERE event_id = ?", [event_id])
                moved.append(event_id)
        return moved

    def refused(self, *, dismissed: bool = False) -> list[RefusedAction]:
        """Refused actions, oldest first: those not dismissed (all with ``dismissed=True``)."""
        where = "" if dismissed else " WHERE dismissed_at IS NULL"
        rows = self._db.execute(
            "SELECT event, reason, refused_at, dismissed_at, dismissal_id FROM refused"
            f"{where} ORDER BY refused_at, rowid"
        ).fetchall()
        return [
            RefusedAction(
                event_id=(event := DriverEvent.model_validate_json(event_json)).event_id,
                order_id=event.order_id,
                action=event.action,
                at=event.at,
                reason=reason,
                refused_at=datetime.fromisoformat(refused_at),
                dismissed_at=None if dismissed_at is None else datetime.fromisoformat(dismissed_at),
                dismissal_id=dismissal_id,
                note=event.note,
            )
            for event_json, reason, refused_at, dismissed_at, dismissal_id in rows
        ]

    def dismiss(self, event_id: str, message: DriverEventMsg, *, at: datetime) -> None:
        """The driver dismissed refused ``event_id``: the dismissal is recorded on its row and
        ``message`` (the ``dismiss`` event telling the gateway) goes to the outbox, in ONE
        transaction. No local overlay: a dismissal changes no stop."""
        with self._tx():
            cur = self._db.execute(
                "UPDATE refused SET dismissed_at = ?, dismissal_id = ? "
                "WHERE event_id = ? AND dismissed_at IS NULL",
                [at.isoformat(), message.body.event_id, event_id],
            )
            if not cur.rowcount:
                raise StoreError(
                    f"tablet store {self._path}: no refused action {event_id} to dismiss")
            self._db.execute(
                "INSERT INTO outbox (event_id, created_at, payload, attempts) VALUES (?, ?, ?, 0)",
                [message.body.event_id, at.isoformat(), encode(message).decode()],
            )

    def pending(self) -> list[OutboxItem]:
        """The outbox, oldest first."""
        return [item for item, _ in self._pending_rows()]

    def pending_payloads(self) -> list[tuple[str, bytes]]:
        """``(event_id, encoded envelope)`` of the outbox, oldest first: what to resend."""
        return [(item.event_id, payload) for item, payload in self._pending_rows()]

    def changed_elsewhere(self) -> bool:
        """True when another connection committed to the file since the last call (the first
        call: since it was opened). One ``PRAGMA data_version``: no disk read."""
        version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
        changed = version != self._data_version
        self._data_version = version
        return changed

    def unsent_payloads(self) -> list[tuple[str, bytes]]:
        """``pending_payloads`` never sent yet (recorded by another process), oldest first."""
        rows = self._db.execute(
            "SELECT event_id, payload FROM outbox WHERE attempts = 0 ORDER BY rowid").fetchall()
        return [(str(event_id), str(payload).encode()) for event_id, payload in rows]

    def _pending_rows(self) -> list[tuple[OutboxItem, bytes]]:
        rows = self._db.execute(
            "SELECT event_id, created_at, payload, attempts, last_sent_at FROM outbox "
            "ORDER BY rowid"
        ).fetchall()
        out = []
        for event_id, created_at, payload, attempts, last_sent_at in rows:
            try:
                message = DriverEventMsg.model_validate_json(payload)
            except ValidationError as exc:
                raise StoreError(
                    f"tablet store {self._path}: outbox row {event_id} is unreadable: {exc}"
                ) from None
            item = OutboxItem(
                event_id=event_id,
                created_at=datetime.fromisoformat(created_at),
                event=message.body,
                attempts=attempts,
                last_sent_at=None if last_sent_at is None else datetime.fromisoformat(last_sent_at),
            )
            out.append((item, payload.encode()))
        return out

    def outbox_size(self) -> int:
        row = self._db.execute("SELECT count(*) FROM outbox").fetchone()
        return int(row[0])

    def mark_sent(self, event_ids: Iterable[str], *, at: datetime) -> None:
        with self._tx():
            for event_id in event_ids:
                self._db.execute(
                    "UPDATE outbox SET attempts = attempts + 1, last_sent_at = ? "
                    "WHERE event_id = ?",
                    [at.isoformat(), event_id],
                )

    def local_actions(self) -> list[LocalAction]:
        rows = self._db.execute(
            "SELECT event, acked FROM local_actions ORDER BY at, rowid"
        ).fetchall()
        out = []
        for event_json, acked in rows:
            event = DriverEvent.model_validate_json(event_json)
            out.append(
                LocalAction(
                    event_id=event.event_id,
                    order_id=event.order_id,
                    action=event.action,
                    at=event.at,
                    acked=bool(acked),
                    reason=event.reason,
                    note=event.note,
                )
            )
        return out
