"""Flush the write-back queue: driver results go where the legacy system imports them.

``flush_writeback(store, cfg, now)`` takes the store's pending results (``Store.pending_results``)
and writes them with the ``[writeback]`` target of gateway.toml:

    kind = "csv"   path = "import"                 -> import/results-{stamp}.csv (one drop a flush)
    kind = "dbf"   path = "import/results.dbf"     -> appended (a folder means folder/results.dbf)
    kind = "odbc"  connection = "..."  table = "CROSSDOCK_RESULTS"

then marks them written in one transaction. Rules of this module:

* **Exactly once across restarts.** Every writer skips result ids already present in its target
  (earlier CSV drops in the folder, rows of the DBF table, rows of the SQL table), so a crash
  after the write and before ``mark_written`` writes nothing twice on the next flush; results
  marked written are never offered again.
* **One odd result blocks no other.** Each result is checked first (ids, outcome, times); one
  that cannot be written stays pending and is reported in ``WritebackSummary.refused`` with its
  id and reason; the rest are written.
* **Times** go out in the legacy system's zone (``[writeback] timezone``, else the first mapped
  source's mapping zone, else UTC): naive local times for the DBF table and the SQL insert (which
  hold no offset), ISO 8601 with the local offset in a CSV drop.
* A target that cannot be written raises ``WritebackError`` (one line); a ``[writeback]``
  section that is missing or incomplete raises ``ConfigError``. Nothing is marked written then.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.config import GatewayConfig, WritebackSection
from gateway.errors import ConfigError, GatewayError, WritebackError
from gateway.ingest.mapping import source_mapping
from gateway.store.core import Store
from gateway.writeback.csvfile import append_results_csv

__all__ = ["WritebackSummary", "flush_writeback", "writeback_zone"]

DBF_NAME = "results.dbf"
_TIME_KEYS = ("arrived_at", "done_at")
_BATCH = 5000


@dataclass(frozen=True)
class WritebackSummary:
    """What one flush did: results offered, newly written rows, refused results."""

    kind: str
    target: str
    pending: int = 0
    written: int = 0  # rows the target did not hold yet (the others were already there)
    marked: int = 0  # results now marked written in the store
    files: tuple[str, ...] = ()
    refused: tuple[str, ...] = field(default=())  # "result_id: reason", left pending

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def writeback_zone(cfg: GatewayConfig) -> ZoneInfo:
    """The legacy system's zone for written times (see the module's rules)."""
    section = cfg.writeback
    name = section.timezone if section is not None else None
    if name is None:
        for src in cfg.sources:
            if src.mapping is not None and src.kind != "http":
                return source_mapping(cfg, src).zone
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"[writeback] timezone: unknown time zone {name!r}") from None


def flush_writeback(store: Store, cfg: GatewayConfig, now: _dt.datetime) -> WritebackSummary:
    """Write every pending result to the configured target, then mark them written."""
    section = cfg.writeback
    if section is None:
        raise ConfigError("no [writeback] section in the config: nowhere to write results")
    target = _target(cfg, section)
    zone = writeback_zone(cfg)
    pending = written = marked = 0
    files: list[str] = []
    refused: list[str] = []
    refused_ids: set[str] = set()
    batch_no = 0
    while True:
        batch = [r for r in store.pending_results(limit=_BATCH + len(refused_ids))
                 if str(r.get("result_id")) not in refused_ids][:_BATCH]
        if not batch:
            break
        pending += len(batch)
        good: list[dict[str, Any]] = []
        for body in batch:
            try:
                good.append(_result(body, zone, section.kind))
            except _Refused as why:
                rid = str(body.get("result_id") or "?")
                refused_ids.add(rid)
                refused.append(f"{rid}: {why}")
        if good:
            new, path = _write(section, target, good, now, batch_no)
            written += new
            if path is not None:
                files.append(path)
            with store.transaction():
                store.mark_written([r["result_id"] for r in good], now,
                                   f"{section.kind}:{target}")
            marked += len(good)
        batch_no += 1
    return WritebackSummary(section.kind, target, pending, written, marked, tuple(files),
                            tuple(refused))


def _target(cfg: GatewayConfig, section: WritebackSection) -> str:
    if section.kind == "odbc":
        if not section.connection:
            raise ConfigError("[writeback] kind 'odbc' needs 'connection'")
        from gateway.ingest.odbc import mask_connection  # pyodbc (the gateway extra): +8 ms

        return f"{section.table} ({mask_connection(section.connection)})"
    if not section.path:
        raise ConfigError(f"[writeback] kind {section.kind!r} needs 'path'")
    path = cfg.path(section.path)
    if section.kind == "dbf" and path.suffix.lower() != ".dbf":
        path = path / DBF_NAME
    return str(path)


class _Refused(Exception):
    """A result this target cannot hold; never leaves this module."""


def _result(body: Mapping[str, Any], zone: ZoneInfo, kind: str) -> dict[str, Any]:
    """A queued result as the writers take it (keys in lower case, times converted)."""
    out = {str(k).lower(): v for k, v in body.items()}
    for key in ("result_id", "order_id", "result"):
        if out.get(key) in (None, ""):
            raise _Refused(f"{key} is missing")
    out["result_id"] = str(out["result_id"])
    out["result"] = str(out["result"]).strip().lower()
    for key in _TIME_KEYS:
        value = out.get(key)
        if value in (None, ""):
            out[key] = None
            continue
        if isinstance(value, str):
            try:
                value = _dt.datetime.fromisoformat(value)
            except ValueError:
                raise _Refused(f"{key} {value!r} is not a time") from None
        if not isinstance(value, _dt.datetime):
            raise _Refused(f"{key} {value!r} is not a time")
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.UTC)  # the gateway's own times are UTC
        local = value.astimezone(zone)
        out[key] = local if kind == "csv" else local.replace(tzinfo=None)
    if kind == "dbf":
        _check_dbf(out)
    return out


def _dbf_row(result: Mapping[str, Any]) -> dict[str, Any]:
    return {"RESULT_ID": result["result_id"], "ORDER_ID": result["order_id"],
            "RESULT": result["result"], "REASON": result.get("reason"),
            "ARRIVED": result.get("arrived_at"), "DONE": result.get("done_at"),
            "NOTE": result.get("note")}


def _check_dbf(result: Mapping[str, Any]) -> None:
    """Refuse a result the DBF table cannot hold (outcome, column widths) before the write,
    so it stays pending on its own instead of failing the whole flush."""
    from gateway.writeback.dbffile import RESULTS, dbf_record  # dbf (an extra): +38 ms

    if result["result"] not in RESULTS:
        raise _Refused(f"result {result['result']!r} is not one of {sorted(RESULTS)}")
    try:
        dbf_record(_dbf_row(result))
    except WritebackError as exc:
        raise _Refused(str(exc).removeprefix(f"result {result['result_id']}: ")) from None


def _write(section: WritebackSection, target: str, results: list[dict[str, Any]],
           now: _dt.datetime, batch_no: int) -> tuple[int, str | None]:
    """Rows newly written and the file written (if one), translating writer errors."""
    try:
        if section.kind == "csv":
            stamp = f"{now.astimezone(_dt.UTC):%Y%m%dT%H%M%S%f}-{batch_no:04d}"
            folder = Path(target)
            folder.mkdir(parents=True, exist_ok=True)
            path = append_results_csv(folder, results, stamp=stamp)
            return (0, None) if path is None else (_count_rows(path), str(path))
        if section.kind == "dbf":
            from gateway.writeback.dbffile import append_results_dbf  # dbf: +38 ms

            return append_results_dbf(Path(target), [_dbf_row(r) for r in results]), target
        from gateway.writeback.odbc import insert_results_odbc  # pyodbc: +17 ms

        return insert_results_odbc(section.connection or "", section.table, results), None
    except ConfigError:
        raise
    except WritebackError:
        raise
    except GatewayError as exc:
        raise WritebackError(f"write-back ({section.kind}): {exc}") from None
    except OSError as exc:
        raise WritebackError(
            f"write-back ({section.kind}) to {target}: {exc.strerror or exc}") from None


def _count_rows(path: Path) -> int:
    """Records in a drop just written (header excluded; a note may span lines)."""
    import csv

    with path.open(newline="", encoding="utf-8") as fh:
        return max(0, sum(1 for _ in csv.reader(fh)) - 1)
