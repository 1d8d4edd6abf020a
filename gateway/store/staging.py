"""The rows a source run stages, in the form either process makes them: ``StagedTuple`` (a
valid row: row, order id, digest, canonical values JSON, record, fields, memory hash),
``BadRow`` (one problem of a refused row) and the tagged JSON of a raw record
(``dump_record`` / ``load_record``, for quarantine re-tries).

Apart from ``gateway.store.runs`` (which re-exports them) so that a reading process
(``gateway.ingest.parallel``) imports only this and ``sql``, not the store with sqlite-utils
and ``sync``: 0.5 s less start-up in each reading process (-X importtime, loaded 2-core box).
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gateway.store.sql import canonical_json, text_digest

__all__ = ["BadRow", "StagedRow", "StagedTuple", "dump_record", "load_record", "staged_tuple"]

StagedTuple = tuple[int, str, str, str, str, int, bytes | None]
"""A staged row as SourceRun stores it: (row, order id, digest, values JSON, record, fields,
the record's memory hash or None; see ``gateway.store.records``)."""


def staged_tuple(row: int, order_id: str, vals: dict[str, Any], record: str = "",
                 rawhash: bytes | None = None) -> StagedTuple:
    """The staged form of a valid row (computed in whichever process read the row)."""
    text = canonical_json(vals)
    return (row, order_id, text_digest(text), text, record, len(vals), rawhash)


def _raw_default(value: object) -> object:
    """Raw source values (dates, decimals, bytes) as tagged JSON, for quarantine re-tries."""
    if isinstance(value, _dt.datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, _dt.date):
        return {"$d": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$dec": str(value)}
    if isinstance(value, bytes):
        return {"$b": value.hex()}
    return {"$repr": repr(value)}


def _raw_hook(obj: dict[str, Any]) -> object:
    if len(obj) == 1:
        ((key, val),) = obj.items()
        if key == "$dt":
            return _dt.datetime.fromisoformat(val)
        if key == "$d":
            return _dt.date.fromisoformat(val)
        if key == "$dec":
            return Decimal(val)
        if key == "$b":
            return bytes.fromhex(val)
    return obj


_dump_record = json.JSONEncoder(
    default=_raw_default, ensure_ascii=False, check_circular=False
).encode


def dump_record(values: Any) -> str:
    return _dump_record(values if isinstance(values, dict) else dict(values))


def load_record(text: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(text, object_hook=_raw_hook)
    return loaded


@dataclass(frozen=True)
class StagedRow:
    row: int
    order_id: str
    vals: dict[str, Any]
    record: str


@dataclass(frozen=True)
class BadRow:
    row: int
    order_id: str | None
    field: str
    raw: str
    reason: str
    record: str


