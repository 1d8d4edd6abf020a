"""A legacy system's mapping file: columns to fields, status vocabulary, time zone, cadence.

One TOML file per legacy system, written by an operator after ``crossdock gateway inspect``::

    [source]
    timezone = "Europe/Berlin"   # the zone of naive times in the export
    cadence = "0 0 * * *"        # when the legacy system exports (cron: nightly at 00:00)
    # or: cadence_s = 900        # a source that can know something new every 15 minutes

    [columns]                    # crossdock field = the export's column name
    order_id = "ORDER_ID"
    driver = "DRIVER_ID"
    status = "STATUS"
    ...

    [status]                     # crossdock status = every spelling the export uses
    delayed = ["DLYD", "Delayed", "delayed-wx"]

    required = ["driver", "status", "eta"]   # fields an order may not leave empty

    [drivers]                    # optional: the known driver ids (unknown ones are quarantined)
    ids = ["1", "2"]             # or: file = "drivers.dbf" and column = "DRIVER_ID"

Spellings are matched after trimming, case-insensitively; an unknown spelling is quarantined,
never guessed. The cadence sets each claim's ``as_of`` (the last export time at or before the
run) and the staleness shown to people. ``known_drivers`` reads the ``[drivers]`` section's
ids (inline, or a DBF or CSV file's column).
"""

from __future__ import annotations

import hashlib
import tomllib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal, get_args
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.config import GatewayConfig
from gateway.config import SourceSection as SourceConfig
from gateway.errors import ConfigError
from sync.zones import ZoneName

FIELDS = (
    "order_id", "driver", "route", "sequence", "status", "customer", "address",
    "lat", "lon", "window_start", "window_end", "eta", "load", "notes",
)
"""Fields a mapping can name; ``lat``/``lon`` become ``location``, ``window_*`` ``window``."""

Status = Literal[
    "planned", "en_route", "delayed", "arrived", "delivered", "failed", "refused", "cancelled"
]
STATUSES: tuple[str, ...] = get_args(Status)
"""The crossdock status vocabulary; mapping files map the export's spellings onto these."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SourceSection(_Model):
    timezone: ZoneName = "UTC"
    cadence: str | None = None
    cadence_s: int | None = Field(default=None, ge=1)

    @field_validator("cadence")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            cron_fields(value)
        return value


class DriversSection(_Model):
    ids: tuple[str, ...] = ()
    file: str | None = None
    column: str = "DRIVER_ID"


class Mapping(_Model):
    source: SourceSection = SourceSection()
    columns: dict[str, str]
    status: dict[Status, tuple[str, ...]] = Field(default_factory=dict)
    drivers: DriversSection = DriversSection()
    required: tuple[str, ...] = ("status",)
    path: str = ""
    digest: str = ""

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(FIELDS))
        if unknown:
            raise ValueError(f"unknown field {unknown[0]!r} (fields: {', '.join(FIELDS)})")
        if "order_id" not in value:
            raise ValueError("order_id must be mapped to a column")
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.source.timezone)

    def vocabulary(self) -> dict[str, str]:
        """Spelling (trimmed, case-folded) → crossdock status; canonical names map to themselves."""
        vocab = {s: s for s in STATUSES}
        for status, spellings in self.status.items():
            for spelling in spellings:
                vocab[spelling.strip().casefold()] = status
        return vocab

    def cadence_seconds(self) -> int | None:
        if self.source.cadence_s is not None:
            return self.source.cadence_s
        if self.source.cadence is not None:
            return _cron_period(self.source.cadence)
        return None

    def as_of(self, run_at: datetime) -> datetime:
        """When the export read at ``run_at`` was made: the last cadence time at or before it.

        A nightly export read at 09:12 knew the world as of 00:00; without a cron cadence, the
        run time itself is the honest ``as_of``.
        """
        if self.source.cadence is None:
            return run_at
        return last_fire(self.source.cadence, run_at.astimezone(self.zone))


def load_mapping(path: Path) -> Mapping:
    """Read a mapping file; ConfigError names the file and the key that is wrong."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"mapping {path}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"mapping {path}: not valid TOML: {exc}") from None
    data["path"] = str(path)
    data["digest"] = hashlib.sha256(raw).hexdigest()[:16]
    try:
        return Mapping.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"mapping {path}: {where}: {err['msg']}") from None


# --- a small cron reader: minute hour day-of-month month day-of-week, "*" or numbers/lists ---


def cron_fields(expr: str) -> tuple[set[int], ...]:
    parts = expr.split()
    if len(parts) != 5:
        raise ValueError(f"cadence {expr!r} is not a 5-field cron expression")
    ranges = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
    out = []
    for part, (lo, hi) in zip(parts, ranges, strict=True):
        if part == "*":
            out.append(set(range(lo, hi + 1)))
            continue
        values: set[int] = set()
        for item in part.split(","):
            step = 1
            if "/" in item:
                item, step_text = item.split("/", 1)
                step = int(step_text) if step_text.isdigit() else 0
            if item == "*":
                a, b = lo, hi
            elif "-" in item:
                a_text, b_text = item.split("-", 1)
                if not (a_text.isdigit() and b_text.isdigit()):
                    raise ValueError(f"cadence {expr!r}: bad range {item!r}")
                a, b = int(a_text), int(b_text)
            elif item.isdigit():
                a = b = int(item)
            else:
                raise ValueError(f"cadence {expr!r}: bad value {item!r}")
            if step < 1 or a < lo or b > hi or a > b:
                raise ValueError(f"cadence {expr!r}: {item!r} is out of range {lo}-{hi}")
            values.update(range(a, b + 1, step))
        out.append(values)
    return tuple(out)


def last_fire(expr: str, at: datetime) -> datetime:
    """The latest time at or before ``at`` (minute precision) that the cron expression names."""
    minutes, hours, days, months, weekdays = cron_fields(expr)
    t = at.replace(second=0, microsecond=0)
    for _ in range(60 * 24 * 366):
        if (
            t.minute in minutes
            and t.hour in hours
            and t.day in days
            and t.month in months
            and (t.weekday() + 1) % 7 in weekdays
        ):
            return t
        t -= timedelta(minutes=1)
    raise ValueError(f"cadence {expr!r} never fires")


def _cron_period(expr: str) -> int:
    minutes, hours, days, _months, weekdays = cron_fields(expr)
    if len(days) < 31 or len(weekdays) < 7:
        return 7 * 86400 if len(weekdays) < 7 else 31 * 86400
    per_day = len(minutes) * len(hours)
    return max(60, 86400 // per_day)


IDENTITY_FIELDS = {name: name for name in FIELDS}


def source_mapping(cfg: GatewayConfig, src: SourceConfig) -> Mapping:
    """The source's mapping; an HTTP source without one reads crossdock's own field names."""
    if src.mapping is not None:
        return load_mapping(cfg.path(src.mapping))
    return Mapping.model_validate({"columns": IDENTITY_FIELDS, "path": "(built in)",
                                   "digest": "identity"})


def known_drivers(cfg: GatewayConfig, mapping: Mapping) -> frozenset[str] | None:
    """The driver ids the mapping lists (inline or in a file), or None when it lists none."""
    section = mapping.drivers
    ids = set(section.ids)
    if section.file is not None:
        base = Path(mapping.path).parent if mapping.path else Path(cfg.base_dir)
        path = Path(section.file) if Path(section.file).is_absolute() else base / section.file
        if path.suffix.lower() == ".dbf":
            from gateway.ingest.dbf import read_dbf  # dbfread (the gateway extra): +16 ms

            export = read_dbf(path)
            rows: list[tuple[int, object]] = [
                (raw.row, raw.values.get(section.column)) for raw in export.rows
            ]
        else:
            rows = _csv_column(path, section.column)
        for row, value in rows:
            if value is None:
                raise ConfigError(f"drivers file {path}: row {row}: no {section.column}")
            text = str(value).strip()
            if text:
                ids.add(text)
    if not ids and section.file is None:
        return None
    return frozenset(ids)


def _csv_column(path: Path, column: str) -> list[tuple[int, object]]:
    import csv

    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return [(i, rec.get(column)) for i, rec in enumerate(csv.DictReader(handle), 1)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"drivers file {path}: cannot read: {exc}") from None
