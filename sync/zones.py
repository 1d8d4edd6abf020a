"""Time-zone names: the one check every config that names a zone uses.

(Reads the IANA database through ``zoneinfo``, a lookup of data installed with Python or
``tzdata``, never the wall clock.)
"""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator

from sync.errors import SyncError


def check_zone(name: str) -> str:
    """``name`` when it is a zone the IANA database knows (``Europe/Berlin``, ``UTC``);
    ``SyncError`` naming it otherwise."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SyncError(f"unknown time zone {name!r} (e.g. Europe/Berlin)") from None
    return name


def _zone_value(name: str) -> str:
    try:
        return check_zone(name)
    except SyncError as exc:
        raise ValueError(str(exc)) from None  # pydantic reports a ValueError as the field's


ZoneName = Annotated[str, AfterValidator(_zone_value)]
"""A config field that names a zone: ``timezone: ZoneName = "UTC"`` (tablet and mapping)."""
