"""Helpers for the legacy-link tests: real export files, a mapping and a gateway.toml for them.

Nothing here stands in for a crossdock component: the files are real CSV drops and VFP tables
(written with the ``dbf`` package), the config goes through ``load_config``.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gateway.config import GatewayConfig, load_config
from gateway.sample import ORDER_COLUMNS, write_vfp_table

T0 = dt.datetime(2026, 11, 27, 9, 12, tzinfo=dt.UTC)

COLUMNS = ("ORDER_ID", "DRIVER_ID", "STATUS", "LAT", "LON", "ETA", "NOTES")

MAPPING = """\
required = ["driver", "status", "eta"]

[source]
timezone = "Europe/Berlin"
cadence = "0 0 * * *"

[columns]
order_id = "ORDER_ID"
driver = "DRIVER_ID"
status = "STATUS"
lat = "LAT"
lon = "LON"
eta = "ETA"
notes = "NOTES"

[status]
planned = ["PLANNED", "Planned", "PLAN"]
delayed = ["DLYD", "Delayed", "delayed-wx"]
delivered = ["DELIVERED", "DLVD"]
{extra}
[drivers]
ids = ["D1", "D2", "D3"]
"""


def order(order_id: str, **values: str) -> dict[str, str]:
    """One clean CSV row; keyword arguments override columns."""
    row = {"ORDER_ID": order_id, "DRIVER_ID": "D1", "STATUS": "PLANNED", "LAT": "52.52",
           "LON": "13.40", "ETA": "2026-11-27 10:30", "NOTES": ""}
    row.update(values)
    return row


class Clock:
    """A settable clock: ``clock()`` is now; ``advance(seconds)`` moves it."""

    def __init__(self, start: dt.datetime = T0) -> None:
        self.at = start

    def __call__(self) -> dt.datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += dt.timedelta(seconds=seconds)


def write_mapping(path: Path, *, extra_status: str = "") -> Path:
    path.write_text(MAPPING.format(extra=extra_status), encoding="utf-8")
    return path


def write_config(root: Path, *sources: str, writeback: str = "") -> GatewayConfig:
    """gateway.toml in ``root`` with the given ``[[sources]]`` blocks (TOML text)."""
    text = 'depot = "test"\ndb = "gateway.sqlite"\n\n'
    text += "".join(f"[[sources]]\n{s.strip()}\n\n" for s in sources)
    if writeback:
        text += f"[writeback]\n{writeback.strip()}\n"
    path = root / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def csv_source(name: str = "legacy", folder: str = "drops", **extra: object) -> str:
    lines = [f'name = "{name}"', 'kind = "csv"', f'path = "{folder}"',
             'mapping = "legacy.mapping.toml"', 'done_marker = ".done"', 'encoding = "utf-8"']
    lines += [f"{k} = {_toml(v)}" for k, v in extra.items()]
    return "\n".join(lines)


def foxpro_source(name: str = "legacy", path: str = "export/orders.dbf", **extra: object) -> str:
    lines = [f'name = "{name}"', 'kind = "foxpro"', f'path = "{path}"',
             'mapping = "legacy.mapping.toml"']
    lines += [f"{k} = {_toml(v)}" for k, v in extra.items()]
    return "\n".join(lines)


def _toml(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


def drop_csv(folder: Path, name: str, rows: Sequence[dict[str, str]], *,
             marker: bool = True) -> Path:
    """A whole CSV drop (and its ``.done`` marker)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    if marker:
        (folder / (name + ".done")).write_text("", encoding="utf-8")
    return path


def write_orders_dbf(path: Path, rows: Sequence[dict[str, Any]],
                     spec: str = ORDER_COLUMNS) -> Path:
    """A VFP table (cp1252) with ``rows`` (keys: lower-case column names)."""
    return write_vfp_table(path, spec, rows)


def dbf_order(n: int, **values: Any) -> dict[str, Any]:
    """A clean row for ``gateway.sample.ORDER_COLUMNS``."""
    row: dict[str, Any] = {
        "order_id": f"ORD-{n:06d}", "driver_id": "D1", "route": "R-01", "seq": n,
        "status": "PLANNED", "customer": f"Kunde {n}", "address": f"Torstraße {n}",
        "lat": 52.52, "lon": 13.40, "win_start": dt.datetime(2026, 11, 27, 9),
        "win_end": dt.datetime(2026, 11, 27, 11), "eta": dt.datetime(2026, 11, 27, 10),
        "load_kg": 12.5, "notes": "",
    }
    row.update(values)
    return row


def by_reason(rows: Sequence[Any], needle: str) -> list[Any]:
    return [r for r in rows if needle in r.reason]


Now = Callable[[], dt.datetime]
