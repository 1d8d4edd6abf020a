"""Benchmark: the gateway's CPU per stop change in the refresh path, against raw SQLite.

    .venv/bin/python -m bench.bench_refresh [--drivers 200] [--orders 250] [--changes 50000]
                                            [--batches 500,2000,0] [--profile] [--dir DIR]

No broker, no agents, one process: the CPU the gateway spends between a new claim set and the
stream entries it appends (``gateway.streams.views.refresh``: claims -> merged view -> stored
view -> route rule check -> per-device stream entries).

A store is built as ``bench_fanout``'s (``BenchGateway.populate``: ``--drivers`` x
``--orders`` legacy stops, one device per driver, streams compacted) and copied for every
``--batches`` value (0: all changes in one batch). Then ``--changes`` changes enter it as
``bench_fanout.inject`` hands them in: each a new legacy claim set for one stop with a new
ETA, ``--batch`` of them in one transaction (``bench._depot.add_changes``), then ``refresh()``
(which takes dirty orders 2000 at a time). Timed (``perf_counter``, one thread; CPU by
``process_time``): the hand-in, the refresh, and inside the refresh the claims read, the
merge, ``put_view``, the route syncs (rule check + stream append) and the COMMITs, through
the refresh's public ``RefreshTimer`` hook.

The baseline, in the same run: a raw SQLite loop doing the least writes the same work needs --
per change one upsert of a view-sized row (the real stored view's length) and one stream row,
in one transaction per batch, on a file with the store's pragmas. Both WALs are checkpointed
from another thread, as the gateway's service does (``gateway.store.checkpointer.Checkpointer``).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import pstats
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._depot import T0, BenchGateway, add_changes, order_id, table
from gateway.streams.views import REFRESH_PARTS


def run_gateway(db: Path, policy: Any, *, drivers: int, orders: int, changes: int, batch: int,
                breakdown: bool, profile: bool, profile_out: Path | None = None
                ) -> dict[str, Any]:
    """Hand ``changes`` changes in, ``batch`` per transaction, each followed by a refresh."""
    from gateway.store.checkpointer import Checkpointer
    from gateway.store.core import Store
    from gateway.streams.views import RefreshTimer, refresh

    timer = RefreshTimer() if breakdown else None
    profiler = cProfile.Profile() if profile else None
    hand_in = refreshing = cpu = 0.0
    entries = 0
    per_batch: list[float] = []
    checkpointer = Checkpointer(db)  # as the gateway's service runs its store
    try:
        with Store(db) as store:
            store.defer_checkpoints()
            checkpointer.start()
            for first in range(0, changes, batch):
                ks = range(first, min(changes, first + batch))
                now = T0 + dt.timedelta(hours=1, seconds=first)
                t = time.perf_counter()
                add_changes(store, ks, drivers, orders, now)
                t1 = time.perf_counter()
                c1 = time.process_time()
                if profiler is not None:
                    profiler.enable()
                out = refresh(store, policy, now, timer=timer)
                if profiler is not None:
                    profiler.disable()
                t2 = time.perf_counter()
                cpu += time.process_time() - c1
                hand_in += t1 - t
                refreshing += t2 - t1
                per_batch.append(t2 - t1)
                entries += sum(len(e) for e in out.values())
    finally:
        checkpointer.stop()
    report = ""
    if profiler is not None:
        if profile_out is not None:
            profiler.dump_stats(str(profile_out))
        buf = io.StringIO()
        pstats.Stats(profiler, stream=buf).sort_stats("tottime").print_stats(35)
        report = buf.getvalue()
    return {"hand_in": hand_in, "refresh": refreshing, "cpu": cpu, "entries": entries,
            "batches": per_batch, "parts": dict(timer.seconds) if timer else {},
            "profile": report}


def run_sqlite(db: Path, *, changes: int, batch: int, body: str, orders: int
               ) -> tuple[float, float]:
    """The baseline: per change one view-sized upsert and one stream row; (wall, CPU). Its
    WAL is checkpointed as the gateway's: from another thread."""
    from gateway.store.checkpointer import DEFERRED_CHECKPOINT_PAGES, Checkpointer

    conn = sqlite3.connect(str(db), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA cache_size=-32768")
    conn.execute(f"PRAGMA wal_autocheckpoint={DEFERRED_CHECKPOINT_PAGES}")
    conn.execute("CREATE TABLE views (order_id TEXT PRIMARY KEY, body TEXT NOT NULL)")
    conn.execute("CREATE TABLE changelog (device TEXT NOT NULL, seq INTEGER NOT NULL, "
                 "order_id TEXT NOT NULL, body TEXT, PRIMARY KEY (device, seq)) WITHOUT ROWID")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO views VALUES(?, ?)",
                     [(f"O{k:07d}", body) for k in range(orders)])
    conn.execute("COMMIT")
    checkpointer = Checkpointer(db)
    checkpointer.start()
    t, c = time.perf_counter(), time.process_time()
    for first in range(0, changes, batch):
        conn.execute("BEGIN IMMEDIATE")
        for k in range(first, min(changes, first + batch)):
            oid = f"O{k % orders:07d}"
            conn.execute("INSERT INTO views VALUES(?, ?) ON CONFLICT(order_id) DO UPDATE "
                         "SET body=excluded.body", (oid, body))
            conn.execute("INSERT INTO changelog VALUES(?, ?, ?, ?)",
                         (f"tab{k % 200:03d}", k, oid, body))
        conn.execute("COMMIT")
    seconds, cpu = time.perf_counter() - t, time.process_time() - c
    checkpointer.stop()
    conn.close()
    return seconds, cpu


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--drivers", type=int, default=200)
    ap.add_argument("--orders", type=int, default=250, help="stops per driver")
    ap.add_argument("--changes", type=int, default=50_000)
    ap.add_argument("--batches", default="500,2000,0",
                    help="changes per hand-in transaction, comma list (0: all in one)")
    ap.add_argument("--no-breakdown", action="store_true", help="do not time the steps")
    ap.add_argument("--profile", action="store_true",
                    help="cProfile the refreshes of the first --batches value (stderr)")
    ap.add_argument("--profile-out", type=Path, default=None,
                    help="with --profile: also write the pstats file here")
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args(argv)
    batches = [int(b) or args.changes for b in args.batches.split(",")]
    if args.drivers < 1 or args.orders < 1 or args.changes < 1 or min(batches) < 1:
        ap.error("--drivers, --orders, --changes and --batches must be positive")
    rows: list[tuple[str, str]] = [
        ("run", f"{args.drivers} drivers x {args.orders} stops, one device each, "
                f"{args.changes} changes")]
    with tempfile.TemporaryDirectory(prefix="crossdock-refresh-", dir=args.dir) as tmp:
        work = Path(tmp)
        gw = BenchGateway(work / "template", "127.0.0.1", 1883, args.drivers, args.orders)
        t = time.perf_counter()
        gw.populate(progress=lambda line: print(line, flush=True))
        print(f"  populated in {time.perf_counter() - t:.1f} s", flush=True)
        policy = gw.cfg.merge_policy()
        template = gw.cfg.db_path
        from gateway.store.core import Store

        with Store(template) as store:
            body = store.view_bodies([order_id(0, 0)])[order_id(0, 0)]
        n = args.changes
        for index, batch in enumerate(batches):
            db = work / f"run-{batch}.sqlite"
            shutil.copy(template, db)
            base, base_cpu = run_sqlite(work / f"raw-{batch}.sqlite", changes=n, batch=batch,
                                        body=body, orders=args.drivers * args.orders)
            got = run_gateway(db, policy, drivers=args.drivers, orders=args.orders, changes=n,
                              batch=batch, breakdown=not args.no_breakdown,
                              profile=args.profile and index == 0,
                              profile_out=args.profile_out)
            if got["profile"]:
                print(got["profile"], file=sys.stderr)
            us = 1e6 / n
            worst = max(got["batches"])
            label = f"batch {batch}"
            rows += [
                (f"{label}: hand-in", f"{got['hand_in'] * us:7.1f} us/change"),
                (f"{label}: refresh", f"{got['refresh'] * us:7.1f} us/change "
                 f"(CPU {got['cpu'] * us:.1f}; {got['refresh']:.2f} s, slowest batch "
                 f"{worst * 1000:,.0f} ms, {got['entries']} entries)"),
            ]
            if got["parts"]:
                rows.append((f"{label}:   of which", ", ".join(
                    f"{p} {got['parts'].get(p, 0.0) * us:.1f}" for p in REFRESH_PARTS)))
            rows += [
                (f"{label}: raw SQLite", f"{base * us:7.1f} us/change (CPU {base_cpu * us:.1f}; "
                 f"one {len(body)} B view upsert + one stream row)"),
                (f"{label}: refresh / raw", f"{got['refresh'] / base:.1f}x "
                 f"(CPU {got['cpu'] / base_cpu:.1f}x)"),
            ]
            print(f"  batch {batch}: refresh {got['refresh'] * us:.1f} us/change "
                  f"(CPU {got['cpu'] * us:.1f})", flush=True)
            db.unlink()
    print()
    print(table(rows, "refresh: gateway CPU per stop change vs raw SQLite"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
