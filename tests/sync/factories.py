"""Small builders for sync tests: claims and resolutions with readable defaults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import JsonValue

from sync.model import Claim, Resolution

T0 = datetime(2026, 11, 27, 0, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def stamp(minutes: float, counter: int = 0, node: str = "gw") -> str:
    return f"{int(at(minutes).timestamp() * 1000):015d}-{counter:06d}-{node}"


def claim(
    claim_id: str,
    source: str,
    value: JsonValue,
    *,
    order_id: str = "X",
    field: str = "driver",
    minute: float = 0,
    as_of_minute: float | None = None,
    based_on: tuple[str, ...] = (),
    present: bool = True,
) -> Claim:
    return Claim(
        claim_id=claim_id,
        order_id=order_id,
        field=field,
        value=value,
        present=present,
        source=source,
        as_of=at(minute if as_of_minute is None else as_of_minute),
        received_at=at(minute),
        based_on=based_on,
        hlc=stamp(minute),
    )


def resolution(
    resolution_id: str,
    chosen: Claim,
    seen: tuple[Claim, ...],
    *,
    minute: float = 0,
    by: str = "dispatch:anna",
    override: bool = False,
) -> Resolution:
    return Resolution(
        resolution_id=resolution_id,
        order_id=chosen.order_id,
        field=chosen.field,
        chosen_claim_id=chosen.claim_id,
        value=chosen.value,
        seen=tuple(c.claim_id for c in seen),
        by=by,
        at=at(minute),
        hlc=stamp(minute, 1),
        override=override,
    )
