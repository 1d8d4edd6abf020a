"""Benchmark: the tablet agent's CPU per received stream message, in one process, no broker.

    .venv/bin/python -m bench.bench_agent [--messages 3000] [--entries 6] [--orders 250]
                                          [--profile] [--dir DIR]

What ``bench_fanout`` costs a tablet for each ``view_changes`` message, without paho and the
network: the envelope's bytes decoded (``sync.codec.decode``), handed to a real (unstarted)
``Agent.session_message``, which applies the entries in one SQLite transaction
(``Store.apply_changes``). The views are real: each order's 7 legacy fields merged as the
gateway merges them (``bench._depot.stop_vals``, one candidate each; ~1.8 KB of JSON), each
change a later ETA, ``--entries`` consecutive entries per message as the gateway batches a
tablet's queue in the fan-out.

Timed (``process_time``, one thread): decode alone, ``apply_changes`` alone (on entries
decoded beforehand), and the whole path (decode + ``session_message``), each on a fresh
store, as µs per message and per entry. The baseline in the same run: a raw SQLite loop doing
the least the same work needs -- per message one transaction with one upsert of each view's
received JSON text and one meta row, on a file with the store's pragmas -- and ``json.loads``
of the same bytes. ``--profile`` prints cProfile's top functions of the whole path.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import pstats
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench._depot import T0, order_id, stop_vals, table

DEVICE = "tab000"


def views_json(orders: int, runs: int) -> list[list[Any]]:
    """``[run][order]``: the OrderView of stop (0, order) after legacy run ``run + 2``, merged
    as the gateway does (one claim set per stop and run, one claim per field)."""
    from sync.merge import merge_order
    from sync.model import Claim, Policy

    out = []
    for r in range(runs):
        run = 2 + r
        as_of = T0 + dt.timedelta(hours=run)
        hlc = f"{int(as_of.timestamp() * 1000):015d}-000000-gateway"
        row = []
        for i in range(orders):
            oid = order_id(0, i)
            claims = [
                Claim(claim_id=f"legacy:run{run}:{oid}#{field}", order_id=oid, field=field,
                      value=value, source="legacy", source_rev=f"run{run}", as_of=as_of,
                      received_at=as_of, hlc=hlc)
                for field, value in stop_vals(0, i, minutes_late=run).items()
            ]
            row.append(merge_order(oid, claims, [], Policy(), as_of))
        out.append(row)
    return out


def payloads(messages: int, entries: int, orders: int) -> list[bytes]:
    """``messages`` encoded ``view_changes`` envelopes of ``entries`` consecutive entries each
    (seq 1 on), change ``k`` a new view of order ``k % orders``."""
    from sync.codec import encode
    from sync.envelope import ViewChange, ViewChanges, ViewChangesMsg

    runs = (messages * entries) // orders + 1
    views = views_json(orders, min(runs, 4))
    out = []
    for m in range(messages):
        batch = []
        for j in range(entries):
            k = m * entries + j
            view = views[(k // orders) % len(views)][k % orders]
            batch.append(ViewChange(seq=k + 1, order_id=view.order_id, view=view))
        seq = (m + 1) * entries
        envelope = ViewChangesMsg(
            v=1, kind="view_changes", id=f"{DEVICE}:{seq}", origin="gateway",
            hlc=f"{int(T0.timestamp() * 1000) + m:015d}-000000-gateway",
            body=ViewChanges(entries=tuple(batch), head=seq))
        out.append(encode(envelope))
    return out


def make_agent(folder: Path) -> Any:
    from agent.config import AgentConfig, BrokerConfig
    from agent.service import Agent

    config = AgentConfig(depot="bench-depot", device=DEVICE, driver="D000",
                         db=folder / f"{DEVICE}.sqlite", broker=BrokerConfig(host="127.0.0.1"))
    return Agent(config)


def timed(run: Callable[[], None]) -> float:
    t = time.process_time()
    run()
    return time.process_time() - t


def bench_decode(data: list[bytes]) -> float:
    from sync.codec import decode

    def run() -> None:
        for payload in data:
            decode(payload)

    return timed(run)


def bench_apply(data: list[bytes], folder: Path) -> float:
    from agent.store import Store
    from sync.envelope import ViewChangesMsg
    from sync.hlc import Hlc

    decoded = [ViewChangesMsg.model_validate_json(payload) for payload in data]
    store = Store.open(folder / "apply.sqlite")
    now = dt.datetime.now(dt.UTC)

    def run() -> None:
        for envelope in decoded:
            store.apply_changes(envelope.body.entries, at=now, remote=Hlc.parse(envelope.hlc),
                                node=DEVICE, now_ms=int(time.time() * 1000))

    try:
        return timed(run)
    finally:
        store.close()


def bench_whole(data: list[bytes], folder: Path) -> float:
    return _whole(data, folder, profile=False)[0]


def _whole(data: list[bytes], folder: Path, *, profile: bool) -> tuple[float, str]:
    from agent.session import Incoming
    from sync.codec import decode

    agent = make_agent(folder)
    topic = agent.topics.inbox(DEVICE)

    def run() -> None:
        for payload in data:
            agent.session_message(Incoming(topic, decode(payload)))

    try:
        if not profile:
            return timed(run), ""
        prof = cProfile.Profile()
        seconds = timed(lambda: prof.runcall(run))
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
        return seconds, out.getvalue()
    finally:
        last = agent.applied_seq()
        agent.stop()
        expected = sum(len(json.loads(p)["body"]["entries"]) for p in data)
        if last != expected:
            raise RuntimeError(f"agent applied up to seq {last}, expected {expected}")


def bench_raw(data: list[bytes], folder: Path) -> float:
    """The least the store's work needs: per message one transaction, one upsert per entry
    of the view's JSON text as received, one meta row."""
    conn = sqlite3.connect(str(folder / "raw.sqlite"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE views (order_id TEXT PRIMARY KEY, seq INTEGER, json TEXT)")
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    rows = []
    for payload in data:
        entries = json.loads(payload)["body"]["entries"]
        rows.append([(e["order_id"], e["seq"], json.dumps(e["view"], separators=(",", ":")))
                     for e in entries])

    def run() -> None:
        for batch in rows:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO views (order_id, seq, json) VALUES (?, ?, ?) "
                "ON CONFLICT(order_id) DO UPDATE SET seq = excluded.seq, json = excluded.json",
                batch)
            conn.execute("INSERT INTO meta (key, value) VALUES ('receiver', ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                         (json.dumps({"last": batch[-1][1]}),))
            conn.execute("COMMIT")

    try:
        return timed(run)
    finally:
        conn.close()


def bench_loads(data: list[bytes]) -> float:
    def run() -> None:
        for payload in data:
            json.loads(payload)

    return timed(run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--entries", type=int, default=6)
    parser.add_argument("--orders", type=int, default=250)
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs of each part")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args(argv)
    data = payloads(args.messages, args.entries, args.orders)
    n, e = len(data), len(data) * args.entries
    size = sum(map(len, data)) / n
    results: dict[str, float] = {}
    profile_text = ""
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for r in range(args.repeat):
            base = Path(tmp) / f"r{r}"
            base.mkdir()
            parts: dict[str, Callable[[], float]] = {
                "json.loads (baseline)": partial(bench_loads, data),
                "raw SQLite (baseline)": partial(bench_raw, data, base),
                "decode": partial(bench_decode, data),
                "apply_changes": partial(bench_apply, data, base),
                "decode + session_message": partial(bench_whole, data, base),
            }
            for name, part in parts.items():
                seconds = part()
                results[name] = min(results.get(name, seconds), seconds)
        if args.profile:
            base = Path(tmp) / "profile"
            base.mkdir()
            _, profile_text = _whole(data, base, profile=True)
    rows = [("run", f"{n:,} view_changes messages x {args.entries} entries "
                    f"({size:,.0f} B each), best of {args.repeat}")]
    for name, seconds in results.items():
        rows.append((name, f"{seconds * 1e6 / n:8.1f} µs/message  "
                           f"{seconds * 1e6 / e:7.1f} µs/entry"))
    whole, raw = results["decode + session_message"], results["raw SQLite (baseline)"]
    rows.append(("ratio whole / (raw SQLite + json.loads)",
                 f"{whole / (raw + results['json.loads (baseline)']):.2f}"))
    print(table(rows, "tablet agent: CPU per stream message (process_time)"))
    if profile_text:
        print()
        print(profile_text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
