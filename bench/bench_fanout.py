"""Benchmark: fan-out of stop changes from the gateway to tablet agents, against raw paho.

    .venv/bin/python -m bench.bench_fanout [--agents 200] [--orders 250] [--changes 50000]
                                           [--dispatch 1000] [--dispatch-rate 100] [--dir DIR]
                                           [--boards 20]

One Mosquitto (anonymous, no ACL, loopback, a queue of 1,000,000) serves both runs:

1. **raw** (the baseline) -- one paho QoS 1 publisher in this process, ``--agents`` subscriber
   processes each on its own topic; ``--changes`` messages round-robin over the topics, each as
   large as a real ``view_change`` envelope of this run. msgs/s = messages / (first publish ->
   last message received by any subscriber).
2. **crossdock** -- the gateway (``GatewayService``, in this process) over a store of
   ``--agents`` drivers x ``--orders`` stops (legacy claims), one registered device per driver,
   and one ``agent.service.Agent`` process per device with its own SQLite; every agent starts
   from a snapshot of its route. Then ``--changes`` stop changes enter the gateway as the
   legacy export's next run does (new legacy claim sets, committed in batches of ``--batch``,
   each by one run of the source's job on ``GatewayScheduler``, in its thread with its own
   Store, which then hands the merge to the gateway's worker, as under ``gateway run``): each
   change is one new ETA for one stop, i.e. one
   ``view_change`` for one tablet. changes/s = entries committed in the tablets' SQLite /
   (first change handed to the gateway -> last tablet COMMIT). Latency per change = the
   tablet's COMMIT time (``time.time()`` after ``session_message`` returned) - the time the
   change was handed to the gateway; all processes share the machine's clock.
3. **dispatch** -- ``--dispatch`` ``cancel`` commands published by a dispatch client over MQTT
   at ``--dispatch-rate`` per second (0: as fast as possible) on stops not changed before;
   latency = the tablet's COMMIT - the command's publish.

Prints a table with both throughputs, their ratio (the target is >= 0.5), latency p50/p99,
and RSS/PSS and CPU of the processes.

With ``--boards N`` the crossdock run is done twice in the same run, on the same store: first
with no board open, then with the dispatch board served from the gateway's process (as
``gateway run`` serves it) and ``N`` boards logged in and holding its event stream open (one
client process, ``bench._boards``); the second run's changes are new ETAs again
(``--boards-first``: the run with boards first, to see what the order itself does). The table
gives both ratios to raw paho, and how often the board redrew and what that took.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench._depot import (
    DEPOT,
    BenchGateway,
    Fleet,
    add_changes,
    device_id,
    order_id,
    percentile,
    running,
    start_bench_broker,
    table,
    wait_until,
)


def sample_payload(gw: BenchGateway) -> bytes:
    """A real view_change envelope of this run (what raw messages are sized after)."""
    from gateway.store.core import Store
    from sync.codec import encode
    from sync.envelope import ViewChange, ViewChangeMsg
    from sync.model import OrderView

    with Store(gw.cfg.db_path) as store:
        body = store.view_bodies([order_id(0, 0)])[order_id(0, 0)]
    view = OrderView.model_validate_json(body)
    return encode(ViewChangeMsg(v=1, kind="view_change", id="tab000:1", origin="gateway",
                                hlc="001717394400000-000000-gateway",
                                body=ViewChange(seq=1, order_id=view.order_id, view=view)))


# --- 1. raw paho ----------------------------------------------------------------------------


def run_raw(host: str, port: int, work: Path, *, subscribers: int, messages: int,
            size: int) -> dict[str, float]:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    specs = [{"client_id": f"raw-sub-{i}", "topic": f"bench/raw/{i}",
              "out": str(work / f"raw-{i}.json")} for i in range(subscribers)]
    fleet = Fleet("raw", host, port, specs, work)
    with running(fleet):
        if not fleet.wait_ready(300):
            raise RuntimeError(f"only {fleet.ready()} of {subscribers} raw subscribers ready")
        acked = threading.Semaphore(0)
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="raw-pub", protocol=mqtt.MQTTv5)
        pub.max_queued_messages_set(0)
        pub.max_inflight_messages_set(100)  # as the gateway's link
        pub.on_publish = lambda *_a: acked.release()
        pub.connect(host, port, keepalive=30)
        pub.loop_start()
        payload = (b"x" * size)
        t0 = time.time()
        for k in range(messages):
            pub.publish(f"bench/raw/{k % subscribers}", payload, qos=1)
        for _ in range(messages):
            if not acked.acquire(timeout=120):
                break
        t_pub = time.time()
        wait_until(lambda: False, 0.5)  # the last deliveries
        pub.disconnect()
        pub.loop_stop()
        _n, rss, pss = fleet.memory()
        cpu = fleet.cpu()
        results = fleet.stop()
    times = [t for r in results for t in r["times"]]
    got = len(times)
    wall = (max(times) - t0) if times else float("nan")
    return {"received": got, "wall": wall, "rate": got / wall if times else 0.0,
            "pub_wall": t_pub - t0, "rss_mib": rss / 1024, "pss_mib": pss / 1024, "cpu": cpu}


# --- 2. crossdock ---------------------------------------------------------------------------


class _BatchSource:
    """The bench's legacy source as the scheduler's job sees it (an ``Adapter``): each run of
    the job writes the next batch of changes as an ingest run writes what changed
    (``add_changes``: claim sets, one transaction, in the job's own thread and Store) and then
    has no input left to read. The job then hands the merge to the gateway's worker
    (``GatewayScheduler(hand_refresh=service.request_refresh)``), as ``gateway run``'s polls
    do; the rows are not parsed from a file (that is bench_ingest's part)."""

    name = "legacy"

    def __init__(self, gw: BenchGateway) -> None:
        from gateway.store.core import Store

        self.gw = gw
        self.store_path = gw.cfg.db_path
        self.Store = Store
        self.batch: range = range(0)
        self.handed_at = 0.0

    def exports(self) -> Iterator[Any]:
        if self.batch:
            with self.Store(self.store_path) as store:
                add_changes(store, self.batch, self.gw.drivers, self.gw.orders,
                            dt.datetime.now(dt.UTC))
            self.handed_at = time.time()
        return iter(())

    def done(self, export: Any) -> None:
        return None


def inject(gw: BenchGateway, changes: int, batch: int, rate: float, *, merged: bool = False,
           offset: int = 0) -> dict[tuple[str, str], list[float]]:
    """Hand ``changes`` new ETAs to the gateway (legacy run 2, 3...) through the scheduler's
    own path: one run of the source's job per ``batch`` (its own thread and Store, then
    ``hand_refresh``), without waiting for the merge (``merged``: waiting until it is done,
    so each batch is merged alone); (device, order) -> times handed (committed). ``offset``: the
    changes are ``offset ...``, later ETAs than those of a run before with that many."""
    from gateway.scheduler import GatewayScheduler

    drivers, orders = gw.drivers, gw.orders
    source = _BatchSource(gw)
    sched = GatewayScheduler(gw.cfg, clock=lambda: dt.datetime.now(dt.UTC),
                             adapters={"legacy": source},
                             hand_refresh=gw.service.request_refresh)
    sched.start()
    handed: dict[tuple[str, str], list[float]] = defaultdict(list)
    t_start = time.time()
    try:
        for first in range(offset, offset + changes, batch):
            ks = range(first, min(offset + changes, first + batch))
            if rate > 0:
                wait = t_start + (first - offset) / rate - time.time()
                if wait > 0:
                    time.sleep(wait)
            runs = sched.runs["source:legacy"]
            source.batch = ks
            sched.run_now("legacy")
            if not wait_until(lambda n=runs: sched.runs["source:legacy"] > n, 60, 0.002):
                raise RuntimeError("the scheduler's source job did not run")
            if merged:
                gw.service.call(lambda _store: None)  # served after the refresh handed in
            for k in ks:
                d, i = k % drivers, (k // drivers) % orders
                handed[(device_id(d), order_id(d, i))].append(source.handed_at)
    finally:
        sched.shutdown()
    return handed


def dispatch_cancels(gw: BenchGateway, host: str, port: int, count: int, rate: float,
                     changed: int) -> dict[tuple[str, str], list[float]]:
    """``count`` cancel commands over MQTT on stops the bulk phase did not touch."""
    from gateway.streams.mqtt import LinkSettings, MqttLink
    from sync.codec import encode
    from sync.envelope import ENVELOPE
    from sync.topics import Topics

    topics = Topics(DEPOT)
    replies: list[bytes] = []
    link = MqttLink(LinkSettings(host=host, port=port, client_id="bench-dispatch",
                                 session_expiry_s=0),
                    subscriptions=[topics.replies("bench")],
                    on_message=lambda _t, p: replies.append(p))
    link.start()
    sent: dict[tuple[str, str], list[float]] = defaultdict(list)
    try:
        if not link.wait_connected(10):
            raise RuntimeError("dispatch client could not connect")
        time.sleep(0.3)  # the reply subscription
        drivers, orders = gw.drivers, gw.orders
        total = drivers * orders  # the bulk phase changed stops k = 0, 1, ... (mod total)
        untouched = [((k % total) % drivers, (k % total) // drivers)
                     for k in range(changed, changed + min(count, total))]
        t_start = time.time()
        for n, (d, i) in enumerate(untouched[:count]):
            if rate > 0:
                wait = t_start + n / rate - time.time()
                if wait > 0:
                    time.sleep(wait)
            now = dt.datetime.now(dt.UTC)
            msg = ENVELOPE.validate_python({
                "v": 1, "kind": "dispatch_command", "id": f"cmd-{uuid.uuid4().hex[:16]}",
                "origin": "bench", "hlc": f"{int(now.timestamp() * 1000):015d}-000000-bench",
                "body": {"action": "cancel", "order_id": order_id(d, i), "client": "bench",
                         "reason": "customer cancelled"}})
            payload = encode(msg)
            sent[(device_id(d), order_id(d, i))].append(time.time())
            link.publish(topics.commands, payload)
        wait_until(lambda: len(replies) >= min(count, len(untouched)), 600, 0.1)
    finally:
        link.stop()
    return sent


def wait_converged(gw: BenchGateway, timeout: float) -> bool:
    def done() -> bool:
        return all(applied >= last for last, applied in gw.streams().values())

    return wait_until(done, timeout, 0.5)


def latencies(results: list[dict[str, Any]], handed: dict[tuple[str, str], list[float]],
              since: float, until: float = float("inf")) -> tuple[list[float], int, float]:
    """(latencies, entries committed in [since, until), last commit time)."""
    seen: dict[tuple[str, str], int] = defaultdict(int)
    out: list[float] = []
    count, last = 0, 0.0
    for r in results:
        for _seq, oid, t in r["records"]:
            if not since <= t < until:
                continue
            count += 1
            last = max(last, t)
            key = (r["device"], oid)
            times = handed.get(key)
            if times is None:
                continue
            n = seen[key]
            seen[key] += 1
            if n < len(times):
                out.append(t - times[n])
    return out, count, last


class Boards:
    """The board served from this (the gateway's) process, and ``n`` boards open on it."""

    def __init__(self, gw: BenchGateway, n: int, work: Path) -> None:
        from bench._depot import free_port
        from gateway.board.server import BoardServer
        from gateway.store.accounts import AccountStore
        from gateway.store.core import Store

        self.n = n
        self.out = work / "boards.json"
        work.mkdir(parents=True, exist_ok=True)
        with Store(gw.cfg.db_path) as store:
            if "bench" not in AccountStore(store).users():
                AccountStore(store).add_user("bench", "bench-password", dt.datetime.now(dt.UTC))
        self.server = BoardServer(gw.cfg, port=free_port())
        self.proc: Any = None

    def __enter__(self) -> Boards:
        import subprocess

        self.server.start()
        self.proc = subprocess.Popen([sys.executable, "-m", "bench._boards", self.server.url,
                                      str(self.n), "bench", "bench-password", str(self.out)])
        if not wait_until(lambda: self.server.board.hub.subscribers >= self.n, 60, 0.1):
            raise RuntimeError(f"only {self.server.board.hub.subscribers} of {self.n} boards "
                               "opened their event stream")
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.server.stop()

    def figures(self) -> dict[str, Any]:
        hub = self.server.board.hub
        got = json.loads(self.out.read_text()) if self.out.exists() else {}
        return {"boards": self.n, "renders": hub.renders, "render_s": hub.render_s,
                "events": got.get("events", 0), "bytes": got.get("bytes", 0),
                "errors": got.get("errors", 0)}


def run_crossdock(gw: BenchGateway, host: str, port: int, work: Path, args: argparse.Namespace,
                  *, boards: int = 0, offset: int = 0) -> dict[str, Any]:
    import contextlib

    specs = gw.agent_specs(range(gw.drivers), work / "agents")
    fleet = Fleet("agent", host, port, specs, work)
    gw.start(**({} if args.coalesce is None else {"coalesce_s": args.coalesce}),
             **({} if args.settle is None else {"ingest_settle_s": args.settle}))
    board = Boards(gw, boards, work / "boards") if boards else None
    try:
        with running(fleet), board or contextlib.nullcontext():
            t = time.time()
            if not fleet.wait_ready(600):
                raise RuntimeError(f"only {fleet.ready()} of {len(specs)} agents online")
            if not wait_converged(gw, 600):
                raise RuntimeError("agents did not apply their snapshots")
            print(f"  {len(specs)} agents online with their snapshots in {time.time() - t:.1f} s")
            n_idle, rss_idle, pss_idle = fleet.memory()
            ru0 = resource.getrusage(resource.RUSAGE_SELF)
            cpu_fleet0 = fleet.cpu()
            before = gw.streams()
            profiler = None
            if args.profile:
                import cProfile

                profiler = cProfile.Profile()
                gw.service.call(lambda _s: profiler.enable())  # profiles the worker thread
            wcpu0 = gw.service.call(lambda _s: time.thread_time())  # the worker's CPU clock
            t0 = time.time()
            handed = inject(gw, args.changes, args.batch, args.rate, offset=offset)
            t_handed = time.time()
            ok = wait_converged(gw, args.timeout)
            worker_cpu = gw.service.call(lambda _s: time.thread_time()) - wcpu0
            if profiler is not None:
                import pstats

                gw.service.call(lambda _s: profiler.disable())
                stats = pstats.Stats(profiler, stream=sys.stderr)
                stats.sort_stats(args.profile_sort).print_stats(40)
            after = gw.streams()
            ru1 = resource.getrusage(resource.RUSAGE_SELF)
            cpu_fleet1 = fleet.cpu()
            _n, rss_busy, pss_busy = fleet.memory()
            print(f"  bulk phase {'converged' if ok else 'DID NOT CONVERGE'} "
                  f"in {time.time() - t0:.1f} s")
            expected = sum(after[d][0] - before[d][0] for d in after)
            t1 = time.time()
            sent: dict[tuple[str, str], list[float]] = {}
            if args.dispatch:
                sent = dispatch_cancels(gw, host, port, args.dispatch, args.dispatch_rate,
                                        args.changes + offset + (args.dispatch if offset else 0))
                wait_converged(gw, args.timeout)
            published = gw.service.published
            published_entries = gw.service.published_entries
            stream_messages = gw.service.stream_messages
            results = fleet.stop()
    finally:
        gw.stop()
    bulk_lat, bulk_committed, last = latencies(results, handed, t0, t1)
    lat_d, committed_d, last_d = latencies(results, sent, t1)
    wall = last - t0 if bulk_committed else float("nan")
    usage: dict[str, float] = defaultdict(float)  # agents, from ready to stop (incl. dispatch)
    for r in results:
        for k, v in r.get("usage", {}).items():
            usage[k] += v
    return {
        "board": board.figures() if board is not None else None,
        "usage": dict(usage),
        "agents": len(specs), "expected": expected, "committed": bulk_committed,
        "wall": wall, "handed_wall": t_handed - t0, "rate": bulk_committed / wall,
        "p50": percentile(bulk_lat, 50), "p99": percentile(bulk_lat, 99),
        "max": max(bulk_lat, default=float("nan")),
        "worker_cpu": worker_cpu,
        "gw_cpu": (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
        "fleet_cpu": cpu_fleet1 - cpu_fleet0, "rss_idle": rss_idle / 1024,
        "pss_idle": pss_idle / 1024, "rss_busy": rss_busy / 1024, "pss_busy": pss_busy / 1024,
        "n_procs": n_idle, "published": published, "published_entries": published_entries,
        "stream_messages": stream_messages,
        "d_count": committed_d, "d_p50": percentile(lat_d, 50), "d_p99": percentile(lat_d, 99),
        "d_wall": (last_d - t1) if committed_d else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=200)
    ap.add_argument("--orders", type=int, default=250, help="stops per driver")
    ap.add_argument("--changes", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=500, help="changes per gateway transaction")
    ap.add_argument("--rate", type=float, default=0.0, help="changes/s handed (0: max)")
    ap.add_argument("--dispatch", type=int, default=1000, help="cancel commands (0: none)")
    ap.add_argument("--dispatch-rate", type=float, default=100.0)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--coalesce", type=float, default=None,
                    help="the gateway's coalesce_s (default: gateway.streams.service.COALESCE_S)")
    ap.add_argument("--settle", type=float, default=None,
                    help="the gateway's ingest_settle_s (default: gateway.streams.service."
                         "INGEST_SETTLE_S)")
    ap.add_argument("--skip-raw", action="store_true")
    ap.add_argument("--profile", action="store_true", help="cProfile the gateway worker")
    ap.add_argument("--profile-sort", default="tottime")
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--boards", type=int, default=0,
                    help="also run crossdock with this many dispatch boards open (e.g. 20)")
    ap.add_argument("--boards-first", action="store_true",
                    help="with --boards: the run with boards open first, then the one without")
    args = ap.parse_args(argv)
    if args.agents < 1 or args.changes < 1 or args.orders < 1:
        ap.error("--agents, --orders and --changes must be positive")
    with tempfile.TemporaryDirectory(prefix="crossdock-fanout-", dir=args.dir) as tmp:
        work = Path(tmp)
        broker = start_bench_broker(work / "broker")
        try:
            print(f"broker {broker.url}; {args.agents} agents x {args.orders} stops, "
                  f"{args.changes} changes")
            gw = BenchGateway(work / "gateway", broker.host, broker.port, args.agents,
                              args.orders)
            gw.populate()
            size = len(sample_payload(gw))
            raw: dict[str, float] = {}
            if not args.skip_raw:
                raw = run_raw(broker.host, broker.port, work / "raw", subscribers=args.agents,
                              messages=args.changes, size=size)
                print(f"  raw: {raw['received']:.0f} received, {raw['rate']:.0f} msgs/s")
            with_boards: dict[str, Any] | None = None
            if args.boards > 0 and args.boards_first:
                print(f"  with {args.boards} dispatch boards open first")
                with_boards = run_crossdock(gw, broker.host, broker.port, work / "cd-boards",
                                            args, boards=args.boards)
            cd = run_crossdock(gw, broker.host, broker.port, work / "cd", args,
                               offset=args.changes if with_boards is not None else 0)
            if args.boards > 0 and not args.boards_first:
                print(f"  again with {args.boards} dispatch boards open")
                with_boards = run_crossdock(gw, broker.host, broker.port, work / "cd-boards",
                                            args, boards=args.boards, offset=args.changes)
        finally:
            broker.stop()
    ratio = cd["rate"] / raw["rate"] if raw.get("rate") else float("nan")
    rows = [
        ("run", f"{args.agents} processes, {args.changes} changes, payload {size} B"),
        ("raw paho QoS1 pub->sub", f"{raw.get('rate', float('nan')):,.0f} msgs/s "
         f"({raw.get('received', 0):.0f} msgs in {raw.get('wall', float('nan')):.2f} s)"),
        ("crossdock ->SQLite COMMIT", f"{cd['rate']:,.0f} changes/s ({cd['committed']} of "
         f"{cd['expected']} entries in {cd['wall']:.2f} s)"),
        ("ratio crossdock/raw", f"{ratio:.2f} (target >= 0.50)"),
        ("crossdock stream messages", f"{cd['published_entries']:,} entries in "
         f"{cd['stream_messages']:,} view_change(s) messages (all phases; a tablet's queued "
         "entries go as one view_changes)"),
        ("latency hand-in->COMMIT", f"p50 {cd['p50'] * 1000:,.0f} ms, p99 "
         f"{cd['p99'] * 1000:,.0f} ms, max {cd['max'] * 1000:,.0f} ms"),
        ("hand-in wall (ingest thread)", f"{cd['handed_wall']:.2f} s"),
        ("dispatch publish->COMMIT", f"p50 {cd['d_p50'] * 1000:,.0f} ms, p99 "
         f"{cd['d_p99'] * 1000:,.0f} ms ({cd['d_count']} cancels at "
         f"{args.dispatch_rate:g}/s)"),
        ("CPU bulk phase", f"gateway process {cd['gw_cpu']:.1f} s (its worker thread "
         f"{cd['worker_cpu']:.1f} s), agents {cd['fleet_cpu']:.1f} s (raw subscribers "
         f"{raw.get('cpu', float('nan')):.1f} s)"),
        ("agents ready->stop (sum)", "CPU {:.1f} s ({:.2f} ms/entry), minor faults {:,.0f}, "
         "ctx switches {:,.0f} vol / {:,.0f} invol, "
         "GC runs gen0/1/2 {:,.0f}/{:,.0f}/{:,.0f}".format(
             cd["usage"].get("utime", 0) + cd["usage"].get("stime", 0),
             1000 * (cd["usage"].get("utime", 0) + cd["usage"].get("stime", 0))
             / max(1, cd["committed"] + cd["d_count"]),
             *(cd["usage"].get(k, 0) for k in ("minflt", "nvcsw", "nivcsw", "gc0", "gc1",
                                                 "gc2")))),
        ("memory agents", f"{cd['n_procs']} procs: RSS {cd['rss_busy']:,.0f} MiB "
         f"(PSS {cd['pss_busy']:,.0f} MiB); raw subs RSS {raw.get('rss_mib', 0):,.0f} MiB "
         f"(PSS {raw.get('pss_mib', 0):,.0f} MiB)"),
    ]
    if with_boards is not None:
        wb, b = with_boards, with_boards["board"]
        ratio_b = wb["rate"] / raw["rate"] if raw.get("rate") else float("nan")
        rows += [
            (f"with {args.boards} boards open", f"{wb['rate']:,.0f} changes/s ({wb['committed']} "
             f"of {wb['expected']} entries in {wb['wall']:.2f} s), ratio {ratio_b:.2f} "
             f"(without: {ratio:.2f})"),
            ("  latency hand-in->COMMIT", f"p50 {wb['p50'] * 1000:,.0f} ms, p99 "
             f"{wb['p99'] * 1000:,.0f} ms (without: p50 {cd['p50'] * 1000:,.0f}, p99 "
             f"{cd['p99'] * 1000:,.0f})"),
            ("  CPU bulk phase", f"gateway process {wb['gw_cpu']:.1f} s, its worker thread "
             f"{wb['worker_cpu']:.1f} s (without: {cd['gw_cpu']:.1f} s, "
             f"{cd['worker_cpu']:.1f} s)"),
            ("  the board", f"{b['renders']} redraws, {b['render_s']:.1f} s reading and "
             f"rendering, {b['events']} events ({b['bytes'] / 1024:,.0f} KiB) to "
             f"{args.boards} boards, {b['errors']} errors"),
        ]
    print()
    print(table(rows, "fan-out: crossdock vs raw paho through the same Mosquitto"))
    print(json.dumps({"raw": raw, "crossdock": cd, "with_boards": with_boards},
                     default=float), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
