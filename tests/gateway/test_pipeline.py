"""The legacy link through the real pipeline: real export files → ``ingest_source`` → SQLite.

Each test writes real files (CSV drops, VFP tables), runs the source as the gateway does and
reads the outcome back from the store: runs, claim sets, withdrawals, proposals.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from httpserver import ScriptedServer, json_reply, proposals
from legacy import (
    Clock,
    csv_source,
    dbf_order,
    drop_csv,
    foxpro_source,
    order,
    write_config,
    write_mapping,
    write_orders_dbf,
)

from gateway.config import GatewayConfig
from gateway.ingest.pipeline import RunSummary, ingest_source, make_adapter
from gateway.store.core import Store
from gateway.streams.views import refresh


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _fox(tmp_path: Path, rows: list[dict[str, object]]) -> GatewayConfig:
    write_mapping(tmp_path / "legacy.mapping.toml")
    write_orders_dbf(tmp_path / "export" / "orders.dbf", rows)
    return write_config(tmp_path, foxpro_source())


def _run(store: Store, cfg: GatewayConfig, clock: Clock, name: str = "legacy"
         ) -> list[RunSummary]:
    clock.advance(60)
    return ingest_source(store, cfg, cfg.source(name), now=clock)


def _claims(store: Store, run_id: int | None = None) -> dict[str, tuple[bool, dict[str, object]]]:
    sql = "SELECT order_id, present, vals FROM claim_sets"
    args: tuple[object, ...] = ()
    if run_id is not None:
        sql += " WHERE run_id=?"
        args = (run_id,)
    return {o: (bool(p), json.loads(v)) for o, p, v in store.conn.execute(sql, args)}


def _state(store: Store) -> dict[str, str]:
    return dict(store.conn.execute("SELECT order_id, vals FROM source_state").fetchall())


# --- diff to claims ------------------------------------------------------------------------


def test_first_run_claims_every_field_of_every_clean_order(tmp_path: Path, clock: Clock) -> None:
    cfg = _fox(tmp_path, [dbf_order(1), dbf_order(2)])
    with Store(cfg.db_path) as store:
        (run,) = _run(store, cfg, clock)
        assert (run.status, run.rows_read, run.rows_changed, run.rows_quarantined) == (
            "ok", 2, 2, 0)
        claims = _claims(store)
    assert set(claims) == {"ORD-000001", "ORD-000002"}
    present, vals = claims["ORD-000001"]
    assert present and vals["status"] == "planned" and vals["driver"] == "D1"
    assert vals["location"] == {"lat": 52.52, "lon": 13.4}
    assert vals["eta"] == "2026-11-27T10:00:00+01:00"  # naive time in the mapping's zone
    assert run.claims == sum(len(v) for _, v in claims.values())


def test_byte_identical_file_is_skipped_without_parsing(tmp_path: Path, clock: Clock) -> None:
    cfg = _fox(tmp_path, [dbf_order(1)])
    with Store(cfg.db_path) as store:
        _run(store, cfg, clock)
        (again,) = _run(store, cfg, clock)
        assert (again.status, again.rows_read, again.claims) == ("skipped", 0, 0)
        assert store.conn.execute("SELECT count(*) FROM claim_sets").fetchone()[0] == 1


def test_unchanged_export_rewritten_emits_no_claims(tmp_path: Path, clock: Clock) -> None:
    cfg = _fox(tmp_path, [dbf_order(1), dbf_order(2)])
    with Store(cfg.db_path) as store:
        _run(store, cfg, clock)
        # the same rows written again: new bytes (the header's date, record order), same data
        write_orders_dbf(tmp_path / "export" / "orders.dbf", [dbf_order(2), dbf_order(1)])
        with (tmp_path / "export" / "orders.dbf").open("r+b") as fh:
            fh.seek(1)
            fh.write(bytes([99, 1, 1]))  # another last-update date: not byte-identical
        (again,) = _run(store, cfg, clock)
        assert (again.status, again.rows_read, again.rows_changed, again.claims) == (
            "ok", 2, 0, 0)
        assert store.conn.execute("SELECT count(*) FROM claim_sets").fetchone()[0] == 2


def test_one_changed_row_claims_only_its_changed_fields(tmp_path: Path, clock: Clock) -> None:
    cfg = _fox(tmp_path, [dbf_order(1), dbf_order(2), dbf_order(3)])
    with Store(cfg.db_path) as store:
        _run(store, cfg, clock)
        write_orders_dbf(tmp_path / "export" / "orders.dbf",
                         [dbf_order(1), dbf_order(2, status="DLYD", driver_id="D2"), dbf_order(3)])
        (again,) = _run(store, cfg, clock)
        assert (again.rows_changed, again.claims) == (1, 2)
        assert _claims(store, again.run_id) == {
            "ORD-000002": (True, {"driver": "D2", "status": "delayed"})}


def test_order_gone_from_export_is_withdrawn_not_cancelled(tmp_path: Path, clock: Clock) -> None:
    cfg = _fox(tmp_path, [dbf_order(n) for n in range(1, 11)])
    with Store(cfg.db_path) as store:
        _run(store, cfg, clock)  # one of ten gone: 10 %, under the 20 % that would hold it
        write_orders_dbf(tmp_path / "export" / "orders.dbf",
                         [dbf_order(n) for n in range(1, 11) if n != 2])
        (again,) = _run(store, cfg, clock)
        (present, vals) = _claims(store, again.run_id)["ORD-000002"]
        assert present is False
        assert "cancelled" not in json.dumps(vals)
        refresh(store, cfg.merge_policy(), clock())
        view = store.view("ORD-000002")
        assert view is not None
        assert view.fields["status"].state == "withdrawn"
        assert view.value("status") is None


# --- dirty rows ------------------------------------------------------------------------------


DIRTY = [
    ("lat", order("O-LAT", LAT="N/A"), "lat", "lat is not a number"),
    ("range", order("O-RNG", LAT="123.4"), "lat", "less than or equal to 90"),
    ("lon-range", order("O-LON", LON="-190"), "lon", "greater than or equal to -180"),
    ("time", order("O-TIME", ETA="27.11.2026 25:99"), "eta", "eta is not a time"),
    ("driver", order("O-DRV", DRIVER_ID="D99"), "driver", "'D99' is not a known driver"),
    ("status", order("O-ZZZ", STATUS="ZZZ"), "status", "spelling 'ZZZ' is not in the mapping"),
    ("blank", order("O-BLANK", ETA=""), "eta", "eta is empty"),
]


@pytest.mark.parametrize(("case", "row", "field", "reason"), DIRTY, ids=[d[0] for d in DIRTY])
def test_dirty_row_is_quarantined_with_field_raw_value_and_reason(
    tmp_path: Path, clock: Clock, case: str, row: dict[str, str], field: str, reason: str
) -> None:
    write_mapping(tmp_path / "legacy.mapping.toml")
    cfg = write_config(tmp_path, csv_source())
    drop_csv(tmp_path / "drops", "orders.csv", [order("O-OK"), row])
    with Store(cfg.db_path) as store:
        (run,) = _run(store, cfg, clock)
        assert (run.status, run.rows_read, run.rows_quarantined) == ("ok", 2, 1)
        (bad,) = store.quarantine()
        assert set(_claims(store)) == {"O-OK"}
    assert (bad.order_id, bad.field, bad.row) == (row["ORDER_ID"], field, 2)
    assert reason in bad.reason
    assert bad.location.endswith("orders.csv")
    raw = row[{"lat": "LAT", "lon": "LON", "eta": "ETA", "driver": "DRIVER_ID",
               "status": "STATUS"}[field]]
    assert bad.raw == raw


def test_duplicate_order_id_quarantines_both_rows(tmp_path: Path, clock: Clock) -> None:
    write_mapping(tmp_path / "legacy.mapping.toml")
    cfg = write_config(tmp_path, csv_source())
    drop_csv(tmp_path / "drops", "orders.csv",
             [order("O-1"), order("O-2", DRIVER_ID="D1"), order("O-2", DRIVER_ID="D2")])
    with Store(cfg.db_path) as store:
        (run,) = _run(store, cfg, clock)
        rows = store.quarantine()
        assert run.rows_quarantined == 2
        assert set(_claims(store)) == {"O-1"}  # neither twin was picked silently
    assert sorted(r.row for r in rows) == [2, 3]
    assert {r.order_id for r in rows} == {"O-2"}
    assert all("appears in rows 2, 3" in r.reason for r in rows)


def test_quarantined_order_is_not_withdrawn_and_keeps_its_last_good_values(
    tmp_path: Path, clock: Clock
) -> None:
    write_mapping(tmp_path / "legacy.mapping.toml")
    cfg = write_config(tmp_path, csv_source())
    drop_csv(tmp_path / "drops", "a.csv", [order("O-1"), order("O-2")])
    with Store(cfg.db_path) as store:
        _run(store, cfg, clock)
        drop_csv(tmp_path / "drops", "b.csv", [order("O-1"), order("O-2", LAT="N/A")])
        (run,) = _run(store, cfg, clock)
        assert (run.rows_quarantined, run.claims) == (1, 0)
        assert json.loads(_state(store)["O-2"])["location"] == {"lat": 52.52, "lon": 13.4}


def test_fixing_the_mapping_retries_the_quarantined_row_into_claims(
    tmp_path: Path, clock: Clock
) -> None:
    mapping = write_mapping(tmp_path / "legacy.mapping.toml")
    cfg = write_config(tmp_path, csv_source())
    drop_csv(tmp_path / "drops", "orders.csv", [order("O-1"), order("O-2", STATUS="ZZZ")])
    with Store(cfg.db_path) as store:
        _run(store, cfg, clock)
        assert [r.field for r in store.quarantine()] == ["status"]
        write_mapping(mapping, extra_status='cancelled = ["ZZZ"]\n')
        (retry,) = _run(store, cfg, clock)  # no new drop: only the re-try runs
        assert (retry.location, retry.status, retry.rows_changed) == ("quarantine re-try", "ok", 1)
        assert store.quarantine() == []
        closed = store.quarantine(include_closed=True)
        assert closed[0].closed_at is not None
        assert _claims(store, retry.run_id)["O-2"][1]["status"] == "cancelled"
        (idle,) = _run(store, cfg, clock)  # nothing left to re-try, nothing new
        assert idle.status == "idle"


# --- inputs that cannot be read --------------------------------------------------------------


def _damage_truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 70])  # the last record and the EOF mark


def _damage_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0] = 0x99
    path.write_bytes(bytes(data))


def _damage_memo(path: Path) -> None:
    path.with_suffix(".fpt").unlink()


@pytest.mark.parametrize(("damage", "message"), [
    (_damage_truncate, "truncated"),
    (_damage_header, "not a DBF table"),
    (_damage_memo, "memo file orders.FPT is missing"),
], ids=["truncated", "wrong-header", "missing-memo"])
def test_unreadable_file_fails_the_run_and_keeps_the_last_good_data(
    tmp_path: Path, clock: Clock, damage: object, message: str
) -> None:
    spec = "ORDER_ID C(12); DRIVER_ID C(8); STATUS C(12); LAT N(10,6); LON N(10,6); ETA T; NOTES M"
    write_mapping(tmp_path / "legacy.mapping.toml")
    path = tmp_path / "export" / "orders.dbf"
    rows = [{"order_id": f"O-{i}", "driver_id": "D1", "status": "PLANNED", "lat": 52.5,
             "lon": 13.4, "eta": dbf_order(1)["eta"], "notes": f"memo {i}"} for i in range(5)]
    write_orders_dbf(path, rows, spec)
    cfg = write_config(tmp_path, foxpro_source())
    with Store(cfg.db_path) as store:
        _run(store, cfg, clock)
        before = (_state(store), _claims(store), store.quarantine())
        write_orders_dbf(path, rows[:2], spec)
        damage(path)  # type: ignore[operator]
        (run,) = _run(store, cfg, clock)
        assert run.status == "failed"
        assert run.error is not None and "\n" not in run.error
        assert message.lower() in run.error.lower()
        assert (_state(store), _claims(store), store.quarantine()) == before
        last = store.last_run("legacy")
        assert last is not None and last.status == "failed"


# --- CSV drops, HTTP proposals ---------------------------------------------------------------


def test_half_written_csv_is_not_ingested_until_its_marker_exists(
    tmp_path: Path, clock: Clock
) -> None:
    write_mapping(tmp_path / "legacy.mapping.toml")
    cfg = write_config(tmp_path, csv_source())
    path = drop_csv(tmp_path / "drops", "orders.csv", [order("O-1"), order("O-2")], marker=False)
    with path.open("a", encoding="utf-8") as fh:
        fh.write("O-3,D1,PLAN")  # the writer is mid-line
    with Store(cfg.db_path) as store:
        (run,) = _run(store, cfg, clock)
        assert run.status == "not-ready"
        assert _claims(store) == {}
        with path.open("a", encoding="utf-8") as fh:
            fh.write("NED,52.5,13.4,2026-11-27 11:00,\r\n")
        (tmp_path / "drops" / "orders.csv.done").write_text("", encoding="utf-8")
        (run,) = _run(store, cfg, clock)
        assert (run.status, run.rows_read) == ("ok", 3)
        assert set(_claims(store)) == {"O-1", "O-2", "O-3"}


def test_csv_drop_without_marker_is_read_once_unchanged_for_the_settle_time(
    tmp_path: Path, clock: Clock
) -> None:
    write_mapping(tmp_path / "legacy.mapping.toml")
    cfg = write_config(tmp_path, csv_source(name="settle", settle_s=30.0).replace(
        'done_marker = ".done"\n', ""))
    path = drop_csv(tmp_path / "drops", "orders.csv", [order("O-1")], marker=False)
    with Store(cfg.db_path) as store:
        (first,) = _run(store, cfg, clock, "settle")
        assert first.status == "not-ready"  # written just now: it may still be growing
        old = time.time() - 60
        os.utime(path, (old, old))
        # a one-shot run (a fresh adapter, as `crossdock gateway ingest` has) reads it too
        (second,) = ingest_source(store, cfg, cfg.source("settle"), now=clock,
                                  adapter=make_adapter(cfg, cfg.source("settle")))
        assert (second.status, second.rows_read) == ("ok", 1)


def _http_cfg(tmp_path: Path, server: ScriptedServer, mode: str, endpoints: list[str]
              ) -> GatewayConfig:
    return write_config(tmp_path, "\n".join([
        'name = "optimizer"', 'kind = "http"', f'url = "{server.url}"', f'mode = "{mode}"',
        "endpoints = [" + ", ".join(f'"{e}"' for e in endpoints) + "]", "timeout_s = 2",
        "rate_per_s = 100"]))


def test_partial_http_fan_out_is_recorded_partial_and_claims_nothing(
    tmp_path: Path, clock: Clock, http_server: ScriptedServer
) -> None:
    http_server.script("/a", proposals("O-1", "O-2"))
    http_server.script("/b", json_reply({"error": "nope"}, status=404))
    cfg = _http_cfg(tmp_path, http_server, "auto", ["/a", "/b"])
    with Store(cfg.db_path) as store:
        (run,) = _run(store, cfg, clock, "optimizer")
        assert (run.status, run.claims) == ("partial", 0)
        assert run.error is not None and "/b" in run.error
        assert _claims(store) == {}
        assert store.source_order_count("optimizer") == 0
        assert store.fingerprint_seen("optimizer", "anything") is False


def test_shadow_http_source_writes_proposals_not_claims(
    tmp_path: Path, clock: Clock, http_server: ScriptedServer
) -> None:
    http_server.script("/p", proposals("O-1", "O-2"))
    cfg = _http_cfg(tmp_path, http_server, "shadow", ["/p"])
    with Store(cfg.db_path) as store:
        (run,) = _run(store, cfg, clock, "optimizer")
        assert run.status == "ok"
        assert _claims(store) == {}
        rows = store.conn.execute("SELECT order_id, state, vals FROM proposals ORDER BY order_id"
                                  ).fetchall()
    assert [(o, s) for o, s, _ in rows] == [("O-1", "shadow"), ("O-2", "shadow")]
    assert json.loads(rows[0][2])["driver"] == "d1"


@pytest.mark.odbc
def test_odbc_source_runs_through_the_pipeline_and_diffs(
    tmp_path: Path, clock: Clock, sqlite_odbc: tuple[Path, str]
) -> None:
    db, connection = sqlite_odbc
    with sqlite3.connect(db) as legacy_db:
        legacy_db.execute("CREATE TABLE orders (ORDER_ID TEXT, DRIVER_ID TEXT, STATUS TEXT, "
                          "LAT REAL, LON REAL, ETA TEXT, NOTES TEXT)")
        legacy_db.executemany("INSERT INTO orders VALUES (?,?,?,?,?,?,?)", [
            ("O-1", "D1", "PLANNED", 52.5, 13.4, "2026-11-27 10:00", None),
            ("O-2", "D2", "ZZZ", 52.5, 13.4, "2026-11-27 10:00", None),
        ])
    write_mapping(tmp_path / "legacy.mapping.toml")
    cfg = write_config(tmp_path, "\n".join([
        'name = "legacy"', 'kind = "odbc"', f'connection = "{connection}"',
        'query = "SELECT * FROM orders"', 'mapping = "legacy.mapping.toml"']))
    with Store(cfg.db_path) as store:
        (run,) = _run(store, cfg, clock)
        assert (run.status, run.rows_read, run.rows_quarantined) == ("ok", 2, 1)
        (again,) = _run(store, cfg, clock)  # no fingerprint: read again, nothing changed
        assert (again.status, again.claims) == ("ok", 0)
        assert set(_claims(store)) == {"O-1"}


# --- a gateway killed mid-run ---------------------------------------------------------------


_KILL_ROWS = 100_000  # big enough to be mid-stream 0.5 s in, small enough for CI


@pytest.mark.slow
def test_nothing_is_lost_when_the_gateway_is_killed_mid_run(tmp_path: Path) -> None:
    from bench.bench_foxpro import generate
    from gateway.config import load_config

    (tmp_path / "export").mkdir()
    generate(tmp_path / "export" / "orders.dbf", _KILL_ROWS)
    (tmp_path / "legacy.mapping.toml").write_text(
        "[columns]\norder_id = \"ORDER_ID\"\nstatus = \"STATUS\"\ndriver = \"DRIVER_ID\"\n"
        "notes = \"NOTES\"\n\n[status]\nplanned = [\"PLANNED\", \"Planned\"]\n"
        "delayed = [\"DLYD\", \"Delayed\", \"delayed-wx\"]\ndelivered = [\"DELIVERED\"]\n",
        encoding="utf-8")
    cfg = write_config(tmp_path, foxpro_source())
    argv = [sys.executable, "-c", "from crossdock_cli import main; main()", "gateway", "ingest",
            "--config", str(tmp_path / "gateway.toml"), "--json"]
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.Popen(argv, cwd=repo, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        # kill while it streams: the store file exists and the run has not committed
        while time.monotonic() < deadline and not cfg.db_path.exists():
            time.sleep(0.02)
        time.sleep(0.5)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    with Store(cfg.db_path) as store:
        assert store.conn.execute("SELECT count(*) FROM claim_sets").fetchone()[0] == 0
        assert store.runs("legacy") == []  # no partial run is visible
    done = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with Store(load_config(tmp_path / "gateway.toml").db_path) as store:
        live = _KILL_ROWS - _KILL_ROWS // 100  # every 100th record is deleted
        count, distinct = store.conn.execute(
            "SELECT count(*), count(DISTINCT order_id) FROM claim_sets").fetchone()
        assert count == distinct == live
        (run,) = store.runs("legacy")
        assert (run.status, run.rows_read, run.rows_deleted) == ("ok", live, _KILL_ROWS // 100)


def test_a_glob_source_with_one_unreadable_table_still_reads_the_others(
        tmp_path: Path, clock: Clock) -> None:
    write_mapping(tmp_path / "legacy.mapping.toml")
    write_orders_dbf(tmp_path / "export" / "a.dbf", [dbf_order(1)])
    (tmp_path / "export" / "b.dbf").write_bytes(b"\x30 not a table")  # cut short
    os.utime(tmp_path / "export" / "b.dbf", (1, 1))  # the oldest: read first
    cfg = write_config(tmp_path, foxpro_source(path="export/*.dbf"))
    with Store(cfg.db_path) as store:
        runs = _run(store, cfg, clock)
        claims = _claims(store)
    assert [(Path(r.location or "").name, r.status) for r in runs] == [
        ("b.dbf", "failed"), ("a.dbf", "ok")]
    assert "b.dbf" in (runs[0].error or "")
    assert set(claims) == {"ORD-000001"}
