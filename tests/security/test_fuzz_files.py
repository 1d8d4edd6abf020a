"""Malicious or broken export files, fuzzed at the byte level through ``inspect`` and ``ingest``
(the functions ``crossdock gateway inspect`` and ``crossdock gateway ingest`` call: the
pipeline's ``ingest_source`` and then ``refresh``, as the command does).

The exports: the ``gateway sample`` depot's orders as a Visual FoxPro table with a memo field
(orders.dbf + orders.fpt), the same rows as a CSV drop, and the public DBF fixtures (dBase
II-VII, FoxPro, with .dbt/.fpt memos) for ``inspect``. Each example damages one file in one
region: the DBF header (version, date, counts, lengths, code page), the field descriptors,
the records, the end-of-file mark, the memo header (next block, block size), the memo blocks;
by overwriting bytes, truncating inside the region (every region's first and last byte
included), inserting or cutting a run. A CSV drop is damaged in its bytes, or re-encoded
(UTF-16, a BOM, cp1252 read as UTF-8), or given broken quotes, NULs, lone CRs, a half row.

Each must be a typed error (``SourceError``, or a failed run whose error is one line naming
the file) or a result (rows read, the damaged ones quarantined), never a traceback; and the
last good data is kept: after a run that failed, was held as suspect or skipped, the store's
claims, views, routes, the tablets' streams and the quarantine are exactly as before; after a
run that quarantined rows, those orders' views are as before.

``pytest -s`` prints examples, seconds and outcomes."""

from __future__ import annotations

import collections
import datetime as dt
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import GatewayConfig, load_config
from gateway.errors import SourceError
from gateway.ingest.inspect import inspect_file
from gateway.ingest.pipeline import ingest_source
from gateway.sample import ORDER_COLUMNS, write_vfp_table
from gateway.setup import write_sample_config
from gateway.store.core import Store
from gateway.store.devices import DeviceStore
from gateway.streams.views import refresh
from tests.security.damage import broken_csv, damage
from tests.security.fuzzing import FILE_SHARE, INSPECT_SHARE, fast_dir, reported, share

NOW = dt.datetime(2026, 12, 2, 6, 0, tzinfo=dt.UTC)
FILES = share(FILE_SHARE)
MEMO_COLUMNS = ORDER_COLUMNS.replace("NOTES C(80)", "NOTES M")
KEPT = ("claim_sets", "source_state", "views", "route_members", "device_orders", "changelog",
        "streams", "quarantine", "resolutions", "writeback")
"""What a refused file must leave exactly as it was."""

pytestmark = pytest.mark.slow


def _state(db: Path) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in KEPT}
    finally:
        conn.close()


def _views(state: dict[str, Any]) -> dict[str, str]:
    return {row[0]: row[1] for row in state["views"]}


@dataclass
class FileDepot:
    """A depot whose one source reads ``export`` (a FoxPro table) or ``drops`` (CSV), with one
    good run ingested and merged, and tab-1 (DRV-001) registered; ``pristine`` is that store,
    copied back before each example."""

    root: Path
    cfg: GatewayConfig
    files: dict[str, bytes]  # export file name -> its good bytes
    pristine: Path
    before: dict[str, Any]

    def restore(self) -> None:
        db = self.cfg.db_path
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(self.pristine, db)

    def run(self, written: dict[str, bytes]) -> tuple[list[Any], dict[str, Any]]:
        """Write the export as given, ingest it and merge, as ``gateway ingest`` does."""
        self.restore()
        folder = self.root / ("drops" if self.cfg.sources[0].kind == "csv" else "export")
        folder.mkdir(exist_ok=True)
        for name in self.files:  # the export's own files (drivers.dbf stays)
            for stale in (folder / name, folder / (name + ".done")):
                stale.unlink(missing_ok=True)
        for name, data in written.items():
            (folder / name).write_bytes(data)
        if self.cfg.sources[0].kind == "csv":
            for name in written:
                (folder / (name + ".done")).write_bytes(b"")
        later = NOW + dt.timedelta(hours=1)
        with Store(self.cfg.db_path) as store:
            runs = ingest_source(store, self.cfg, self.cfg.sources[0], now=lambda: later,
                                 parallel=False)
            refresh(store, self.cfg.merge_policy(), later)
        return runs, _state(self.cfg.db_path)


def _rows(root: Path) -> list[dict[str, Any]]:
    import dbfread

    rows = [{k.lower(): v for k, v in r.items()}
            for r in dbfread.DBF(str(root / "export" / "orders.dbf"), encoding="cp1252")]
    for n, row in enumerate(rows):  # memos of several blocks, and empty ones
        row["notes"] = "" if n % 3 == 0 else f"Hof {n}, Klingel defekt. " * (n * 3)
    return rows


def _csv(rows: list[dict[str, Any]]) -> bytes:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([c.split()[0] for c in ORDER_COLUMNS.split("; ")])
    def when(value: dt.datetime | None) -> str:
        return "" if value is None else value.strftime("%Y-%m-%d %H:%M")

    for r in rows:
        writer.writerow([r["order_id"], r["driver_id"], r["route"], r["seq"], r["status"],
                         r["customer"], r["address"], r["lat"], r["lon"], when(r["win_start"]),
                         when(r["win_end"]), when(r["eta"]), r["load_kg"], r["notes"]])
    return out.getvalue().encode("utf-8")


def _make(root: Path, kind: str) -> FileDepot:
    write_sample_config(root, drivers=3, orders=12, seed=5, depot="ff", port=1883, now=NOW)
    rows = _rows(root)
    config = root / "gateway.toml"
    if kind == "csv":
        text = config.read_text(encoding="utf-8")
        text = text.replace('kind = "foxpro"\npath = "export/orders.dbf"',
                            'kind = "csv"\npath = "drops"\ndone_marker = ".done"')
        config.write_text(text.replace('encoding = "cp1252"', 'encoding = "utf-8"'),
                          encoding="utf-8")
        files = {"orders.csv": _csv(rows)}
    else:
        table = write_vfp_table(root / "export" / "orders.dbf", MEMO_COLUMNS, rows)
        files = {p.name: p.read_bytes() for p in (table, table.with_suffix(".fpt"))}
    cfg = load_config(config)
    depot = FileDepot(root, cfg, files, root / "pristine.sqlite", {})
    with Store(cfg.db_path) as store, store.transaction():
        DeviceStore(store).add("tab-1", "DRV-001", "pw", NOW)
    cfg.db_path.replace(depot.pristine)  # a fresh store, then the first good run into it
    for suffix in ("-wal", "-shm"):
        Path(f"{cfg.db_path}{suffix}").unlink(missing_ok=True)
    runs, depot.before = depot.run(files)
    assert [r.status for r in runs] == ["ok"], runs
    assert depot.before["route_members"] and depot.before["changelog"]
    src, dst = sqlite3.connect(cfg.db_path), sqlite3.connect(depot.pristine)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # all of it in the one file copied back
    finally:
        src.close()
        dst.close()
    depot.restore()
    assert _state(cfg.db_path) == depot.before
    return depot


@pytest.fixture(scope="module")
def foxpro() -> Iterator[FileDepot]:
    with fast_dir("fuzz-fox") as root:
        yield _make(root, "foxpro")


@pytest.fixture(scope="module")
def csv_drop() -> Iterator[FileDepot]:
    with fast_dir("fuzz-csv") as root:
        yield _make(root, "csv")


# --- ingest -------------------------------------------------------------------------------------


def _check_run(depot: FileDepot, runs: list[Any], after: dict[str, Any], name: str,
               what: str, seen: collections.Counter[str]) -> None:
    statuses = sorted({r.status for r in runs})
    assert set(statuses) <= {"ok", "degraded", "partial", "suspect", "failed", "skipped",
                             "not-ready", "idle"}, (what, runs)
    if set(statuses) & {"failed", "suspect", "skipped", "not-ready", "idle"}:
        assert after == depot.before, (what, runs)  # the last good data, all of it
    for run in runs:
        if run.status == "failed":
            assert run.error and "\n" not in run.error, (what, run.error)
            stem = name.rsplit(".", 1)[0].lower()
            assert stem in run.error.lower(), ("the error names no file", what, run.error)
    if set(statuses) & {"ok", "degraded", "partial"}:
        quarantined = {row[5] for row in after["quarantine"]
                       if row not in depot.before["quarantine"] and row[5]}
        old, new = _views(depot.before), _views(after)
        kept = {o for o in quarantined if o in old}
        assert {o: new.get(o) for o in kept} == {o: old[o] for o in kept}, (what, runs)
    seen["+".join(statuses)] += 1


def test_a_damaged_foxpro_export_is_a_typed_error_or_quarantine_and_keeps_the_last_good_data(
        foxpro: FileDepot) -> None:
    seen: collections.Counter[str] = collections.Counter()

    @FILES
    @given(case=damage(foxpro.files))
    def run(case: tuple[str, str, bytes]) -> None:
        name, what, data = case
        runs, after = foxpro.run({**foxpro.files, name: data})
        _check_run(foxpro, runs, after, name, f"{name} {what}", seen)

    with reported("ingest of orders.dbf + orders.fpt (byte-level)", seen):
        run()


def test_a_missing_memo_file_fails_the_run_and_keeps_the_last_good_data(
        foxpro: FileDepot) -> None:
    runs, after = foxpro.run({"orders.dbf": foxpro.files["orders.dbf"]})
    assert [r.status for r in runs] == ["failed"]
    assert runs[0].error and "orders.fpt" in runs[0].error.lower()
    assert after == foxpro.before


def test_a_broken_csv_drop_is_a_typed_error_or_quarantine_and_keeps_the_last_good_data(
        csv_drop: FileDepot) -> None:
    seen: collections.Counter[str] = collections.Counter()
    good = csv_drop.files["orders.csv"]

    @FILES
    @given(case=broken_csv(good))
    def run(case: tuple[str, bytes]) -> None:
        how, data = case
        runs, after = csv_drop.run({"orders.csv": data})
        _check_run(csv_drop, runs, after, "orders.csv", how, seen)

    with reported("ingest of a CSV drop (encodings, quotes, bytes)", seen):
        run()


# --- inspect ------------------------------------------------------------------------------------

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "dbf-public"
PUBLIC = {p.name: p.read_bytes() for p in sorted(FIXTURES.iterdir())
          if p.suffix.lower() in (".dbf", ".fpt", ".dbt")}


def _tables(foxpro: FileDepot, csv_drop: FileDepot) -> list[tuple[str, dict[str, bytes]]]:
    """Each table ``inspect`` reads, with the files that belong to it."""
    out = [("orders.dbf", foxpro.files), ("orders.csv", csv_drop.files)]
    for name in PUBLIC:
        if name.lower().endswith(".dbf"):
            stem = name.rsplit(".", 1)[0]
            out.append((name, {n: d for n, d in PUBLIC.items() if n.rsplit(".", 1)[0] == stem}))
    return out


def test_inspect_of_a_damaged_export_is_a_one_line_error_naming_the_file_or_a_description(
        foxpro: FileDepot, csv_drop: FileDepot) -> None:
    import json

    seen: collections.Counter[str] = collections.Counter()
    tables = _tables(foxpro, csv_drop)

    @st.composite
    def cases(draw: st.DrawFn) -> tuple[str, dict[str, bytes], str, str, bytes]:
        table, files = draw(st.sampled_from(tables))
        if table.endswith(".csv") and draw(st.booleans()):
            how, data = draw(broken_csv(files[table]))
            return table, files, table, how, data
        name, what, data = draw(damage(files))
        return table, files, name, what, data

    @share(INSPECT_SHARE)
    @given(case=cases(), encoding=st.sampled_from([None, "cp1252", "cp1251", "utf-8"]))
    def run(case: tuple[str, dict[str, bytes], str, str, bytes], encoding: str | None) -> None:
        table, files, name, what, data = case
        with fast_dir("inspect") as folder:
            for file, content in files.items():
                (folder / file).write_bytes(data if file == name else content)
            try:
                found = inspect_file(folder / table, encoding=encoding)
            except SourceError as exc:
                message = str(exc)
                assert "\n" not in message, (name, what, message)
                assert name.rsplit(".", 1)[0].lower() in message.lower() or (
                    table.rsplit(".", 1)[0].lower() in message.lower()), (name, what, message)
                seen["SourceError"] += 1
                return
        json.dumps(found)  # what --json prints
        seen["described"] += 1

    with reported("inspect (DBF/FPT/DBT/CSV, byte-level)", seen):
        run()


# --- what the fuzz found ----------------------------------------------------------------------


@pytest.mark.parametrize("extra", [b"", b",x\x80y"], ids=["too-few", "too-many"])
def test_a_row_of_the_wrong_width_with_undecodable_bytes_is_quarantined(
        csv_drop: FileDepot, extra: bytes) -> None:
    """Found by the CSV fuzz: a row with too many or too few fields and a byte that is not
    UTF-8 kept the byte as a lone surrogate in the quarantined record: storing it raised
    UnicodeEncodeError out of the ingest (a traceback from ``gateway ingest``)."""
    lines = csv_drop.files["orders.csv"].split(b"\r\n")
    views = _views(csv_drop.before)
    n = next(i for i, line in enumerate(lines[1:], 1) if line.split(b",")[0].decode() in views)
    fields = lines[n].split(b",")
    lines[n] = b",".join([*fields[:4], b"PLAN\x80NED", *fields[5:]]) + extra
    if not extra:
        lines[n] = lines[n].rsplit(b",", 1)[0]  # one field short
    runs, after = csv_drop.run({"orders.csv": b"\r\n".join(lines)})
    assert [r.status for r in runs] in (["ok"], ["degraded"]), runs
    new = [q for q in after["quarantine"] if q not in csv_drop.before["quarantine"]]
    (row,) = [q for q in new if q[4] == n]  # the row, named
    assert "fields, header has" in row[8], row
    assert _views(after)[row[5]] == _views(csv_drop.before)[row[5]]  # its last good view
