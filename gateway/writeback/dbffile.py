"""Write driver results into a FoxPro table the legacy system can import (``dbf`` package).

The table (Visual FoxPro, code page 1252, no memo fields — memos written by the ``dbf``
package are not readable by VFP 9) has these columns:

    RESULT_ID C(40)   the gateway's id of the result; rows already present are not written again
    ORDER_ID  C(12)
    RESULT    C(10)   delivered | failed | refused
    REASON    C(40)
    ARRIVED   T       naive local time of the legacy system (blank when unknown)
    DONE      T
    NOTE      C(254)

``append_results_dbf`` creates the file when missing and appends otherwise. The caller
remembers what it wrote; skipping RESULT_IDs already in the file makes a crash between the
write and that bookkeeping harmless.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import dbf

from gateway.errors import WritebackError

__all__ = ["RESULTS", "RESULT_COLUMNS", "WritebackError", "append_results_dbf", "dbf_record"]

RESULT_COLUMNS = (
    "RESULT_ID C(40); ORDER_ID C(12); RESULT C(10); REASON C(40); ARRIVED T; DONE T; NOTE C(254)"
)
RESULTS = frozenset({"delivered", "failed", "refused"})
_LENGTHS = {"RESULT_ID": 40, "ORDER_ID": 12, "REASON": 40, "NOTE": 254}
_ENCODING = "cp1252"


def _text(result_id: str, field: str, value: object, *, truncate: bool) -> str:
    text = "" if value is None else str(value)
    text = " ".join(text.split())  # a C field holds one line
    encoded = text.encode(_ENCODING, errors="replace")
    limit = _LENGTHS[field]
    if len(encoded) > limit:
        if not truncate:
            raise WritebackError(
                f"result {result_id}: {field} is {len(encoded)} bytes, the column holds {limit}"
            )
        encoded = encoded[:limit]
    return encoded.decode(_ENCODING, errors="replace")


def _time(result_id: str, field: str, value: object) -> dt.datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise WritebackError(f"result {result_id}: {field} {value!r} is not a time") from None
    if not isinstance(value, dt.datetime):
        raise WritebackError(f"result {result_id}: {field} {value!r} is not a datetime")
    if value.tzinfo is not None:
        raise WritebackError(
            f"result {result_id}: {field} carries a time zone; convert it to the legacy "
            "system's local time first"
        )
    return value.replace(microsecond=(value.microsecond // 1000) * 1000)


def dbf_record(result: Mapping[str, Any]) -> dict[str, Any]:
    """One result as the table's record; ``WritebackError`` when the table cannot hold it."""

    def get(key: str) -> Any:
        return result.get(key, result.get(key.lower()))

    result_id = str(get("RESULT_ID") or "").strip()
    if not result_id:
        raise WritebackError(f"result for order {get('ORDER_ID')!r} has no RESULT_ID")
    outcome = str(get("RESULT") or "").strip().lower()
    if outcome not in RESULTS:
        raise WritebackError(
            f"result {result_id}: RESULT {outcome!r} is not one of {sorted(RESULTS)}"
        )
    return {
        "RESULT_ID": _text(result_id, "RESULT_ID", result_id, truncate=False),
        "ORDER_ID": _text(result_id, "ORDER_ID", get("ORDER_ID"), truncate=False),
        "RESULT": outcome,
        "REASON": _text(result_id, "REASON", get("REASON"), truncate=True),
        "ARRIVED": _time(result_id, "ARRIVED", get("ARRIVED")),
        "DONE": _time(result_id, "DONE", get("DONE")),
        "NOTE": _text(result_id, "NOTE", get("NOTE"), truncate=True),
    }


def append_results_dbf(path: Path, results: Iterable[Mapping[str, Any]]) -> int:
    """Append results (keys as the column names, upper or lower case); return rows written.

    Results whose RESULT_ID is already in the file (or repeated in ``results``) are skipped.
    All results are validated before the file is touched.
    """
    records = [dbf_record(r) for r in results]
    path = Path(path)
    try:
        if path.exists():
            table = dbf.Table(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            table = dbf.Table(str(path), RESULT_COLUMNS, dbf_type="vfp", codepage=_ENCODING)
        table.open(dbf.READ_WRITE)
    except (dbf.DbfError, OSError, ValueError) as exc:
        raise WritebackError(f"{path.name}: cannot open for write-back ({exc})") from None
    written = 0
    try:
        names = {n.upper() for n in table.field_names}
        missing = {"RESULT_ID", "ORDER_ID", "RESULT"} - names
        if missing:
            raise WritebackError(f"{path.name}: not a results table (no {sorted(missing)[0]})")
        seen = {str(rec["RESULT_ID"]).strip() for rec in table}
        for record in records:
            if record["RESULT_ID"] in seen:
                continue
            table.append({k: v for k, v in record.items() if k in names})
            seen.add(record["RESULT_ID"])
            written += 1
    except (dbf.DbfError, OSError) as exc:
        raise WritebackError(
            f"{path.name}: write-back failed after {written} rows ({exc})"
        ) from None
    finally:
        table.close()
    return written
