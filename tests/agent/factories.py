"""Builders for agent tests: order views merged from claims (the real merge), agent configs,
and ``RecordingTransport``, a transport that only records what the agent publishes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import JsonValue

from agent.session import Outgoing
from sync.merge import merge_order
from sync.model import Claim, OrderView, Policy

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def claim(
    claim_id: str,
    source: str,
    value: JsonValue,
    *,
    order_id: str,
    field: str = "status",
    minute: float = 0,
) -> Claim:
    return Claim(
        claim_id=claim_id,
        order_id=order_id,
        field=field,
        value=value,
        source=source,
        as_of=at(minute),
        received_at=at(minute),
        hlc=f"{int(at(minute).timestamp() * 1000):015d}-000000-gw",
    )


def view(order_id: str, status: str = "planned", *, sequence: int = 1) -> OrderView:
    """An order on which legacy and dispatch agree: status and assignment."""
    claims = [
        claim(f"{order_id}-s", "legacy", status, order_id=order_id),
        claim(
            f"{order_id}-a",
            "legacy",
            {"driver": "7", "sequence": sequence},
            order_id=order_id,
            field="assignment",
        ),
    ]
    return merge_order(order_id, claims, [], Policy(), at(1))


def conflicted(order_id: str, *, sequence: int = 1) -> OrderView:
    """An order whose driver assignment is in conflict between legacy and the optimizer."""
    claims = [
        claim(f"{order_id}-s", "legacy", "planned", order_id=order_id),
        claim(
            f"{order_id}-l",
            "legacy",
            {"driver": "7", "sequence": sequence},
            order_id=order_id,
            field="assignment",
        ),
        claim(
            f"{order_id}-o",
            "optimizer",
            {"driver": "9", "sequence": sequence},
            order_id=order_id,
            field="assignment",
            minute=5,
        ),
    ]
    return merge_order(order_id, claims, [], Policy(), at(6))


def write_config(folder: Path, *, port: int, device: str = "tab-07", **sync: float) -> Path:
    settings = {"resync_quiet_s": 30, "backoff_min_s": 0.2, "backoff_max_s": 1.0, **sync}
    sync_lines = "\n".join(f"{k} = {v}" for k, v in settings.items())
    path = folder / f"{device}.toml"
    path.write_text(
        f'depot = "depot-1"\ndevice = "{device}"\ndriver = "7"\ndb = "{device}.sqlite"\n'
        f'[broker]\nhost = "127.0.0.1"\nport = {port}\ntls = false\n'
        f"[sync]\nsession_expiry_s = 3600\n{sync_lines}\n"
    )
    return path


class RecordingTransport:
    """Never connected (so the ticker stays idle) unless told; keeps what was published."""

    def __init__(self, *, connected: bool = False) -> None:
        self.connected = connected
        self.sent: list[Outgoing] = []

    def start(self) -> None:
        pass

    def publish(self, message: Outgoing) -> bool:
        self.sent.append(message)
        return True

    def stop(self, *, final: Outgoing | None = None) -> None:
        pass
