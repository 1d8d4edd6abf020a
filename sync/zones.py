"""Time-zone names: the one check every config that names a zone uses.

(Reads the IANA database through ``zoneinfo``, a lookup of data installed with Python or
``tzdata``, never the wall clock.)
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sync.errors import SyncError


def check_zone(name: str) -> str:
    """``name`` when it is a zone the IANA database knows (``Europe/Berlin``, ``UTC``);
    ``SyncError`` naming it otherwise."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SyncError(f"unknown time zone {name!r} (e.g. Europe/Berlin)") from None
    return name
