"""The words a tablet screen uses: meanings, sources, fields, statuses, actions, failure
reasons, and times and ages in words (``ago``, ``clock``, ``window_words``)."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any, Literal

from sync.rules import aware_time

Meaning = Literal["ok", "info", "pending", "warn", "danger", "hold", "muted"]

AGE_REFRESH_S = 15.0
"""How often a screen is rebuilt with no message arriving, so ages keep moving (<= 30 s)."""

SOURCE_WORDS: dict[str, str] = {
    "legacy": "legacy FoxPro export",
    "dispatch": "dispatch",
    "optimizer": "optimizer",
    "driver": "you (driver)",
}

FIELD_WORDS: dict[str, str] = {
    "status": "status",
    "driver": "driver",
    "route": "route",
    "sequence": "stop number",
    "window": "delivery window",
    "eta": "planned arrival",
    "address": "address",
    "customer": "customer",
    "location": "location",
    "notes": "notes",
    "load": "load",
    "driver_note": "driver's note",
}

STATUS_WORDS: dict[str, tuple[str, Meaning]] = {
    "planned": ("planned", "info"),
    "en_route": ("en route", "info"),
    "delayed": ("delayed", "warn"),
    "arrived": ("arrived", "ok"),
    "delivered": ("delivered", "ok"),
    "failed": ("failed", "danger"),
    "refused": ("refused by customer", "danger"),
    "cancelled": ("cancelled", "muted"),
}

ACTION_WORDS: dict[str, str] = {
    "arrive": "arrived",
    "deliver": "delivered",
    "fail": "failed",
    "refuse": "refused by customer",
    "note": "note",
    "resolve": "choice",
    "dismiss": "dismissal",
}

FAIL_REASONS: tuple[str, ...] = (
    "customer not at home",
    "address not found",
    "no access (gate, dock closed)",
    "goods damaged",
    "vehicle problem",
    "other (see note)",
)
"""The reasons a driver picks from for *failed*; free text goes with them as a note."""


# -- words for times and ages ------------------------------------------------------------------


def ago(seconds: float | None) -> str:
    """An age in words: "just now", "4 min ago", "10 h 41 min ago", "2 d 3 h ago"."""
    if seconds is None:
        return "age unknown"
    s = int(max(0.0, seconds))
    if s < 60:
        return "just now"
    minutes = s // 60
    if minutes < 60:
        return f"{minutes} min ago"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min ago" if minutes else f"{hours} h ago"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h ago" if hours else f"{days} d ago"


def clock(at: datetime | None, zone: tzinfo) -> str:
    """A time of day in the depot's zone ("08:50"); the date too when it is not today's."""
    if at is None:
        return "--:--"
    return at.astimezone(zone).strftime("%H:%M")


def clock_on(at: datetime, zone: tzinfo, now: datetime) -> str:
    """``at`` in the depot's zone: "08:50" today, "01 Dec 08:50" on another day."""
    local, today = at.astimezone(zone), now.astimezone(zone)
    if local.date() == today.date():
        return local.strftime("%H:%M")
    return local.strftime("%d %b %H:%M")


as_time = aware_time  # a view's ISO 8601 value as an aware datetime; None if not one


def cadence_words(cadence_s: int | None) -> str:
    if cadence_s is None:
        return "live"
    if cadence_s == 86400:
        return "nightly"
    if cadence_s % 3600 == 0:
        hours = cadence_s // 3600
        return "hourly" if hours == 1 else f"every {hours} h"
    if cadence_s % 60 == 0:
        return f"every {cadence_s // 60} min"
    return f"every {cadence_s} s"


def source_words(source: str) -> str:
    return SOURCE_WORDS.get(source, source)


def field_words(field: str) -> str:
    return FIELD_WORDS.get(field, field.replace("_", " "))


def value_words(field: str, value: Any, zone: tzinfo, now: datetime) -> str:
    """A value as a driver reads it: "Driver 12", "cancelled", "10:00–12:00"."""
    if value is None:
        return "(none)"
    if field == "status" and isinstance(value, str):
        return STATUS_WORDS.get(value, (value.replace("_", " "), "info"))[0]
    if field == "driver":
        return f"Driver {value}"
    if field == "window" and isinstance(value, dict):
        return window_words(value, zone, now)
    if field == "eta":
        at = as_time(value)
        return "(none)" if at is None else clock_on(at, zone, now)
    if field == "location" and isinstance(value, dict):
        return f"{value.get('lat')}, {value.get('lon')}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in sorted(value.items()))
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def window_words(window: Any, zone: tzinfo, now: datetime) -> str:
    if not isinstance(window, dict):
        return "no window"
    start, end = as_time(window.get("start")), as_time(window.get("end"))
    if start is None and end is None:
        return "no window"
    if start is None:
        return f"until {clock_on(end, zone, now)}" if end is not None else "no window"
    if end is None:
        return f"from {clock_on(start, zone, now)}"
    return f"{clock_on(start, zone, now)}–{clock(end, zone)}"
