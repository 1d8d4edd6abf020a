"""Benchmark: ``read_dbf`` against a bare dbfread loop on a large VFP table with memos.

    .venv/bin/python -m bench.bench_foxpro [--rows 1000000] [--dir DIR]

Generates (once, cached in DIR) a Visual FoxPro ``orders.dbf`` + ``orders.fpt`` with
``--rows`` records (1% deleted, some NULLs through ``_NullFlags``, a memo per record), written
byte by byte with struct for speed. Then each reader runs in its own subprocess, so the peak
RSS (VmHWM) of one does not hide the other's, and the figures are printed: rows/s for the bare
dbfread loop (the baseline), rows/s for ``read_dbf``, their ratio, and peak RSS of each.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIELDS = [  # name, type, length, decimals, flags
    ("ORDER_ID", "C", 12, 0, 0),
    ("DRIVER_ID", "C", 8, 0, 0),
    ("STATUS", "C", 12, 0, 0),
    ("SEQ", "N", 4, 0, 0),
    ("LAT", "N", 10, 6, 0),
    ("LON", "N", 10, 6, 0),
    ("ETA", "T", 8, 0, 0x02),
    ("LOAD_KG", "N", 8, 1, 0),
    ("QTY", "I", 4, 0, 0x02),
    ("NOTES", "M", 4, 0, 0),
    ("_NullFlags", "0", 1, 0, 0x05),
]
BLOCK = 64
_JULIAN_OFFSET = 1721425
_STATUSES = [b"PLANNED", b"Planned", b"DLYD", b"Delayed", b"delayed-wx", b"DELIVERED"]


def generate(path: Path, rows: int, seed: int = 1) -> None:
    """Write a VFP table and its .fpt memo file directly (fast enough for 1M rows)."""
    rng = random.Random(seed)
    header_len = 32 + 32 * len(FIELDS) + 1 + 263
    record_len = 1 + sum(f[2] for f in FIELDS)
    today = dt.date(2024, 6, 3)
    tmp = path.with_suffix(".tmp")
    memo_tmp = path.with_suffix(".fpt.tmp")
    with tmp.open("wb") as out, memo_tmp.open("wb") as memo:
        out.write(
            struct.pack(
                "<BBBBLHH16sBBH", 0x30, 124, 6, 3, rows, header_len, record_len, b"", 0x02, 0x03, 0
            )
        )
        offset = 1
        for name, ftype, length, decimals, flags in FIELDS:
            out.write(
                struct.pack(
                    "<11scLBBB13s",
                    name.encode(),
                    ftype.encode(),
                    offset,
                    length,
                    decimals,
                    flags,
                    b"",
                )
            )
            offset += length
        out.write(b"\r" + b"\0" * 263)
        memo.write(struct.pack(">LHH504s", 0, 0, BLOCK, b""))  # next block patched at the end
        next_block = 512 // BLOCK
        julian = today.toordinal() + _JULIAN_OFFSET
        batch: list[bytes] = []
        for i in range(1, rows + 1):
            note = f"Hinterhof {i % 97}, klingeln bei Nachbarn; Kühlware {i}".encode("cp1252")
            memo_block = struct.pack(">LL", 1, len(note)) + note
            pad = -len(memo_block) % BLOCK
            memo.write(memo_block + b"\0" * pad)
            block_no = next_block
            next_block += (len(memo_block) + pad) // BLOCK
            null_eta = i % 50 == 0
            null_qty = i % 70 == 0
            nulls = (1 if null_eta else 0) | (2 if null_qty else 0)
            msec = (8 * 3600 + (i % 36000)) * 1000
            record = b"".join(
                (
                    b"*" if i % 100 == 0 else b" ",
                    f"ORD-{i:08d}".encode().ljust(12),
                    f"DRV-{i % 47:03d}".encode().ljust(8),
                    _STATUSES[i % len(_STATUSES)].ljust(12),
                    f"{i % 40:4d}".encode(),
                    f"{52.52 + rng.uniform(-0.09, 0.09):10.6f}".encode(),
                    f"{13.40 + rng.uniform(-0.15, 0.15):10.6f}".encode(),
                    b"\0" * 8 if null_eta else struct.pack("<LL", julian, msec),
                    f"{rng.uniform(2, 180):8.1f}".encode(),
                    struct.pack("<i", 0 if null_qty else i % 12),
                    struct.pack("<L", block_no),
                    bytes([nulls]),
                )
            )
            batch.append(record)
            if len(batch) >= 10_000:
                out.write(b"".join(batch))
                batch.clear()
        out.write(b"".join(batch))
        out.write(b"\x1a")
        memo.seek(0)
        memo.write(struct.pack(">L", next_block))
    memo_tmp.replace(path.with_suffix(".fpt"))
    tmp.replace(path)


def peak_rss_kib() -> int:
    """This process's peak resident set size (VmHWM) in KiB, -1 where /proc has none."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def _measure(mode: str, path: Path) -> dict[str, float]:
    start = time.perf_counter()
    count = 0
    if mode == "bare":
        from dbfread import DBF

        for _record in DBF(str(path), encoding="cp1252"):
            count += 1
    else:
        from gateway.ingest.dbf import read_dbf

        for _row in read_dbf(path).rows:
            count += 1
    seconds = time.perf_counter() - start
    return {"rows": count, "seconds": seconds, "peak_rss_kib": peak_rss_kib()}


def _run_child(mode: str, path: Path) -> dict[str, float]:
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_foxpro", "--child", mode, "--file", str(path)],
        check=True,
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "crossdock-bench")
    parser.add_argument("--child", choices=("bare", "ours"), help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_measure(args.child, args.file)))
        return 0

    args.dir.mkdir(parents=True, exist_ok=True)
    path = args.dir / f"orders_{args.rows}.dbf"
    if not (path.exists() and path.with_suffix(".fpt").exists()):
        print(f"generating {args.rows:,} rows into {path} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        generate(path, args.rows)
        print(f"  done in {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
    size_mb = (path.stat().st_size + path.with_suffix(".fpt").stat().st_size) / 1e6
    print(f"table: {path} ({args.rows:,} records, {size_mb:.0f} MB with memo)")

    bare = _run_child("bare", path)
    ours = _run_child("ours", path)
    bare_rate = bare["rows"] / bare["seconds"]
    ours_rate = ours["rows"] / ours["seconds"]
    print(
        f"bare dbfread : {bare['rows']:>9,.0f} rows in {bare['seconds']:6.2f}s = "
        f"{bare_rate:>9,.0f} rows/s, peak RSS {bare['peak_rss_kib'] / 1024:6.1f} MiB"
    )
    print(
        f"read_dbf     : {ours['rows']:>9,.0f} rows in {ours['seconds']:6.2f}s = "
        f"{ours_rate:>9,.0f} rows/s, peak RSS {ours['peak_rss_kib'] / 1024:6.1f} MiB"
    )
    ratio = ours_rate / bare_rate
    verdict = "OK" if ratio >= 0.5 else "BELOW TARGET"
    print(f"ratio read_dbf / bare: {ratio:.2f}x (target >= 0.5x: {verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
