"""Times as the gateway's commands show them: in the depot's zone, said once (issue 10).

Text output converts every time to the depot's zone (``depot_zone``) and prints which zone
once, in a header line; JSON keeps ISO 8601 with the offset, as stored. The CLI, the board and
the tablets' configs (``devices add --agent-config``) all take the zone from here.
"""

from __future__ import annotations

import datetime as _dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.config import GatewayConfig
from gateway.errors import ConfigError
from gateway.writeback.flush import writeback_zone


def depot_zone(cfg: GatewayConfig) -> ZoneInfo:
    """The zone the people at the depot read their clocks in: ``[board] timezone`` when set
    (the dispatcher's page states it), else the legacy system's zone (``[writeback]
    timezone``, else the first mapped legacy source's, else UTC)."""
    name = cfg.board.timezone if cfg.board is not None else None
    if name is None:
        return writeback_zone(cfg)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"[board] timezone: unknown time zone {name!r}") from None


def local(moment: _dt.datetime | str | None, zone: ZoneInfo, fmt: str = "%Y-%m-%d %H:%M"
          ) -> str:
    """``moment`` in ``zone`` (naive stored times are UTC); "-" for None."""
    if moment is None or moment == "":
        return "-"
    at = _dt.datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    if at.tzinfo is None:
        at = at.replace(tzinfo=_dt.UTC)
    return at.astimezone(zone).strftime(fmt)


def zone_line(zone: ZoneInfo, now: _dt.datetime) -> str:
    """``times in Europe/Berlin (UTC+01:00)``: the header said once above text output."""
    offset = now.astimezone(zone).strftime("%z")
    return f"times in {zone.key} (UTC{offset[:3]}:{offset[3:]})"


def age_text(seconds: float) -> str:
    """An age as the CLI and the board say it: "45 s old", "12 min old", "3.5 h old"."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s old"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min old"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h old"
    return f"{seconds / 86400:.1f} days old"
