"""Benchmark: a tablet 2,000 changes behind catches up; bytes on the wire.

    .venv/bin/python -m bench.bench_catchup [--behind 2000] [--orders 150] [--dir DIR]

One driver with ``--orders`` stops (legacy claims), one device, one agent process. The agent
applies its snapshot and stops; ``--behind`` stop changes are appended to its stream while it
is away (new legacy claim sets + a refresh, as the export's next runs do). Then the agent
starts again: its ``Resync(after=last)`` is answered by replay. Measured:

* **gateway-side work** -- the time the gateway's worker spends serving the resync (plan +
  read the changelog + build and hand every ``view_change(s)`` message to paho), as its
  ``watch`` hook reports it (``Repaired.seconds``, timed on the worker thread); the target
  is < 2 s. The replay goes out as ``view_changes`` messages of up to 500 entries / ~64 KiB
  of views;
* **convergence** -- agent start -> the agent's COMMIT of the last entry (includes process
  start, connect, and the broker and agent work);
* **bytes on the wire** -- payload bytes of the replay per entry, and per message (the MQTT
  PUBLISH adds a fixed header, the topic and a packet id per message: reported separately), and
  of the ``snapshot`` envelope of a device whose changelog was compacted (``--orders`` stops).

The baseline is the same number of raw paho QoS 1 messages of the same mean size through the
same Mosquitto to one subscriber process (time from first publish to last receipt).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._depot import (
    DEPOT,
    BenchGateway,
    Fleet,
    device_id,
    running,
    start_bench_broker,
    table,
    wait_until,
)
from bench.bench_fanout import inject, run_raw
from gateway.streams.watch import Handed, Repaired
from sync.topics import Topics


class _Timed:
    """Watches the gateway (``GatewayService.watch``): the resyncs it served, timed on the
    worker thread, and the size of every message a repair handed to the link."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.afters: list[int] = []
        self.payloads: list[int] = []

    def seen(self, event: Handed | Repaired) -> None:
        if isinstance(event, Repaired):
            self.seconds.append(event.seconds)
            self.afters.append(event.after)
        elif event.repair:  # the repair's messages only
            self.payloads.append(event.size)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--behind", type=int, default=2000)
    ap.add_argument("--orders", type=int, default=150)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.behind < 1 or args.orders < 1:
        ap.error("--behind and --orders must be positive")
    with tempfile.TemporaryDirectory(prefix="crossdock-catchup-", dir=args.dir) as tmp:
        work = Path(tmp)
        broker = start_bench_broker(work / "broker")
        try:
            out = run(broker, work, args)
        finally:
            broker.stop()
    n, size = out["entries"], out["sizes"]
    msgs = len(size)
    topic_len = len(Topics(DEPOT).inbox(device_id(0)))
    rows = [
        ("run", f"1 device, {args.orders} stops, {args.behind} changes behind"),
        ("gateway-side work", f"{out['gateway_s']:.3f} s for {n} entries "
         f"(target < 2 s; {out['gateway_s'] / max(n, 1) * 1e6:.0f} us/entry)"),
        ("convergence", f"{out['converge_s']:.2f} s agent start -> last COMMIT "
         f"({out['resyncs']} resync(s) served)"),
        ("raw paho baseline", f"{out['raw_s']:.2f} s for {out['raw_n']} msgs of "
         f"{size and int(statistics.mean(size))} B to one subscriber process"),
        ("bytes per change", f"{sum(size) / max(n, 1):,.0f} B payload per entry "
         f"({n} entries in {msgs} messages, {statistics.mean(size):,.0f} B each; "
         f"+ ~{topic_len + 7} B MQTT header/topic/packet id per message)"),
        ("snapshot", f"{out['snapshot_b']:,} B payload for {out['snapshot_views']} stops "
         f"({out['snapshot_b'] / max(out['snapshot_views'], 1):,.0f} B/stop)"),
    ]
    print()
    print(table(rows, "catch-up: a tablet behind, replayed by the gateway"))
    return 0 if out["gateway_s"] < 2.0 else 1


def run(broker: Any, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    gw = BenchGateway(work / "gateway", broker.host, broker.port, 1, args.orders)
    gw.populate()
    specs = gw.agent_specs([0], work / "agents")
    timed = _Timed()
    gw.start(watchers=[timed.seen])
    try:
        # 1. the agent takes its snapshot (a compacted stream), then goes away
        fleet = Fleet("agent", broker.host, broker.port, specs, work)
        with running(fleet):
            if not fleet.wait_ready(60) or not wait_until(
                    lambda: all(a >= last for last, a in gw.streams().values()), 60, 0.2):
                raise RuntimeError("the agent did not apply its snapshot")
        snapshot_b = timed.payloads[-1]
        snapshot_views = args.orders
        # 2. the stream grows by --behind entries while it is away
        inject(gw, args.behind, args.orders, 0.0, merged=True)  # each batch merged alone: no
        # order changes twice in one refresh, so every change is one entry
        wait_until(lambda: gw.streams()[device_id(0)][0] >= args.behind, args.timeout, 0.2)
        target = gw.streams()[device_id(0)][0]
        timed.seconds.clear()
        timed.payloads.clear()
        timed.afters.clear()
        # 3. it comes back: Resync(after=last) -> replay
        fleet = Fleet("agent", broker.host, broker.port, specs, work)
        t0 = time.time()
        with running(fleet):
            ok = wait_until(lambda: gw.streams()[device_id(0)][1] >= target, args.timeout, 0.1)
            results = fleet.stop()
        if not ok:
            raise RuntimeError(f"the agent did not reach seq {target}")
        last_commit = max(t for _s, _o, t in results[0]["records"])
        sizes = list(timed.payloads)
        replayed = target - min(timed.afters)  # the entries the replay carried
        out = {"gateway_s": sum(timed.seconds), "resyncs": len(timed.seconds),
               "converge_s": last_commit - t0, "entries": replayed, "sizes": sizes,
               "snapshot_b": snapshot_b, "snapshot_views": snapshot_views}
    finally:
        gw.stop()
    raw = run_raw(broker.host, broker.port, work / "raw", subscribers=1, messages=len(sizes),
                  size=int(statistics.mean(sizes)))
    out["raw_s"], out["raw_n"] = raw["wall"], raw["received"]
    return out


if __name__ == "__main__":
    sys.exit(main())
