"""Benchmark: ``crossdock gateway ingest`` end to end against a bare dbfread loop over the
same VFP table.

    .venv/bin/python -m bench.bench_ingest [--rows 1000000] [--dir DIR] [--change 0.01]
                                           [--profile]

Builds (once, cached in DIR) a Visual FoxPro ``orders.dbf`` + ``orders.fpt`` with ``--rows``
records, memos on every record, 1% deleted and some NULLs (``bench.bench_foxpro.generate``),
plus a mapping and a gateway.toml that read it. Then, each in its own subprocess so one peak
RSS (VmHWM) does not hide another:

(a) bare dbfread: iterate ``dbfread.DBF`` over the table (the baseline);
(b) first ingest: the ``crossdock gateway ingest --json`` command, as an operator runs it,
    into a fresh store: read, validate, quarantine, claims, the merge to views and the
    devices' stream entries (everything a tablet needs before it sees a change);
(c) re-ingest after ``--change`` of the records were rewritten in place (their STATUS spelling
    moves to another status), into the store (b) left;

and prints rows/s, the ratios to (a), each peak RSS (the command's process plus its reading
processes) and each phase's share of the command's time (read+validate, diff+commit, merge:
the command's own ``phases_s``). Targets (issue 11): (b) >= 0.5x (a), (c) >= 2x (b), peak RSS
< 400 MB. ``--profile`` prints the top functions of (b) and (c) (cProfile) to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_foxpro import FIELDS, generate, peak_rss_kib

MAPPING = """\
required = ["status"]

[source]
timezone = "Europe/Berlin"
cadence = "0 0 * * *"

[columns]
order_id = "ORDER_ID"
driver = "DRIVER_ID"
status = "STATUS"
sequence = "SEQ"
lat = "LAT"
lon = "LON"
eta = "ETA"
load = "LOAD_KG"
notes = "NOTES"

[status]
planned = ["PLANNED", "Planned"]
delayed = ["DLYD", "Delayed", "delayed-wx"]
delivered = ["DELIVERED"]
en_route = ["ENROUTE"]
"""

CONFIG = """\
depot = "bench"
db = "gateway.sqlite"

[[sources]]
name = "legacy"
kind = "foxpro"
path = "work/orders.dbf"
mapping = "bench.mapping.toml"
"""

RSS_TARGET_MIB = 400


def change_in_place(path: Path, fraction: float) -> int:
    """Rewrite the STATUS of every 1/fraction-th live record in place; returns how many."""
    with path.open("r+b") as fh:
        head = fh.read(12)
        count, header_len, record_len = struct.unpack("<LHH", head[4:12])
        offset = 1
        for name, _type, length, _dec, _flags in FIELDS:
            if name == "STATUS":
                break
            offset += length
        step = max(1, round(1 / fraction))
        changed = 0
        for recno in range(3, count + 1, step):  # bench_foxpro deletes every 100th record
            pos = header_len + (recno - 1) * record_len
            fh.seek(pos)
            if fh.read(1) == b"*":
                continue
            fh.seek(pos + offset)
            fh.write(b"ENROUTE".ljust(12))
            changed += 1
    return changed


def _measure(mode: str, root: Path) -> dict[str, float]:
    table = root / "work" / "orders.dbf"
    start = time.perf_counter()
    count = 0
    extra: dict[str, float] = {}
    if mode == "bare":
        from dbfread import DBF

        for _record in DBF(str(table), encoding="cp1252"):
            count += 1
    else:
        import contextlib
        import io

        from crossdock_cli import cli

        out = io.StringIO()
        code: object = 0
        with contextlib.redirect_stdout(out):
            try:
                cli.main(["gateway", "ingest", "--config", str(root / "gateway.toml"), "--json"],
                         prog_name="crossdock", standalone_mode=False)
            except SystemExit as exc:
                code = exc.code
        report = json.loads(out.getvalue())
        (summary,) = report["runs"]
        if code not in (0, None) or summary["status"] != "ok":
            raise SystemExit(f"ingest {mode}: exit {code}: {summary['status']}: "
                             f"{summary['error']}")
        count = summary["rows_read"]
        extra = {"changed": summary["rows_changed"], "claims": summary["claims"],
                 "quarantined": summary["rows_quarantined"],
                 "stream_entries": report["stream_entries"],
                 **{f"phase_{k}": v for k, v in report["phases_s"].items()}}
    seconds = time.perf_counter() - start
    # the ingest's reading processes (gateway.ingest.parallel) count too: at most two run at
    # once, so the peak is at most this process's plus twice the largest child's
    import resource

    child_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    parent_kib = peak_rss_kib()
    readers = 2 if child_kib else 0
    return {"rows": count, "seconds": seconds, "peak_rss_kib": parent_kib + readers * child_kib,
            "parent_rss_kib": parent_kib, "reader_rss_kib": child_kib, **extra}


def _child(mode: str, root: Path, profile: bool) -> dict[str, float]:
    repo = Path(__file__).resolve().parents[1]
    argv = [sys.executable, "-m", "bench.bench_ingest", "--child", mode, "--dir", str(root)]
    if profile:
        argv.append("--profile")
    out = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=repo,
                         env={**os.environ, "PYTHONPATH": str(repo)})
    if out.stderr:
        print(out.stderr, file=sys.stderr, end="")
    result: dict[str, float] = json.loads(out.stdout.splitlines()[-1])
    return result


def _line(label: str, r: dict[str, float], base: float | None) -> str:
    rate = r["rows"] / r["seconds"]
    ratio = f", {rate / base:4.2f}x bare" if base else ""
    line = (f"{label:<22}: {r['rows']:>10,.0f} rows in {r['seconds']:7.2f}s = {rate:>9,.0f} "
            f"rows/s{ratio}, peak RSS {r['peak_rss_kib'] / 1024:6.1f} MiB")
    phases = {k[6:]: v for k, v in r.items() if k.startswith("phase_")}
    if phases:
        other = max(0.0, r["seconds"] - sum(phases.values()))
        shares = [f"{name} {v:.2f}s ({100 * v / r['seconds']:.0f} %)"
                  for name, v in (*phases.items(), ("start-up+rest", other))]
        line += "\n" + " " * 24 + "phases: " + ", ".join(shares)
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=None,
                        help="Where the table is built (and reused); default: a temp folder.")
    parser.add_argument("--change", type=float, default=0.01, help="Fraction rewritten for (c).")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the ingest children; top functions go to stderr.")
    parser.add_argument("--child", choices=("bare", "first", "again"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        if args.profile and args.child != "bare":
            import cProfile
            import pstats

            prof = cProfile.Profile()
            result = prof.runcall(_measure, args.child, args.dir)
            pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
        else:
            result = _measure(args.child, args.dir)
        print(json.dumps(result))
        return 0

    root: Path = args.dir or Path(tempfile.gettempdir()) / f"crossdock-bench-ingest-{args.rows}"
    root.mkdir(parents=True, exist_ok=True)
    pristine = root / "orders.dbf"
    if not (pristine.exists() and pristine.with_suffix(".fpt").exists()):
        print(f"generating {args.rows:,} rows into {pristine} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        generate(pristine, args.rows)
        print(f"  done in {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
    (root / "bench.mapping.toml").write_text(MAPPING, encoding="utf-8")
    (root / "gateway.toml").write_text(CONFIG, encoding="utf-8")
    work = root / "work"
    work.mkdir(exist_ok=True)
    shutil.copyfile(pristine, work / "orders.dbf")
    shutil.copyfile(pristine.with_suffix(".fpt"), work / "orders.fpt")
    for stale in root.glob("gateway.sqlite*"):
        stale.unlink()
    size_mb = sum(p.stat().st_size for p in work.iterdir()) / 1e6
    print(f"table: {work / 'orders.dbf'} ({args.rows:,} records, {size_mb:.0f} MB with memo)")

    bare = _child("bare", root, False)
    first = _child("first", root, args.profile)
    changed = change_in_place(work / "orders.dbf", args.change)
    again = _child("again", root, args.profile)
    base = bare["rows"] / bare["seconds"]
    print(_line("(a) bare dbfread", bare, None))
    print(_line("(b) first ingest", first, base))
    print(_line(f"(c) re-ingest {changed:,} chg", again, base))
    first_rate = first["rows"] / first["seconds"]
    again_rate = again["rows"] / again["seconds"]
    peak = max(r["peak_rss_kib"] for r in (bare, first, again)) / 1024
    print(f"first ingest claims {first.get('claims', 0):,.0f}, re-ingest changed "
          f"{again.get('changed', 0):,.0f} orders / {again.get('claims', 0):,.0f} claims")
    checks = [
        ("(b) >= 0.5x (a)", first_rate >= 0.5 * base, f"{first_rate / base:.2f}x"),
        ("(c) >= 2x (b)", again_rate >= 2 * first_rate, f"{again_rate / first_rate:.2f}x"),
        (f"peak RSS < {RSS_TARGET_MIB} MiB", peak < RSS_TARGET_MIB, f"{peak:.0f} MiB"),
    ]
    for name, ok, figure in checks:
        print(f"target {name:<22} {figure:>8}  {'OK' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
