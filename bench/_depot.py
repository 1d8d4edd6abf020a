"""Shared harness of the sync benchmarks: a broker, a gateway with a synthetic fleet, and
fleets of tablet agents or raw paho subscribers running as separate processes.

* ``start_bench_broker(dir)`` -- Mosquitto on a free loopback port: anonymous, no ACL, a queue
  large enough that nothing a benchmark sends is dropped.
* ``BenchGateway`` -- ``gateway.toml`` + a store holding ``drivers`` x ``orders`` legacy
  claims, ``drivers`` registered devices, and the running ``GatewayService`` (in this process).
* ``Fleet`` -- a launcher subprocess (``python -m bench._depot fleet SPEC``) imports everything
  once, then forks one child per tablet (``agent``) or per raw subscriber (``raw``); each child
  has its own paho client, its own SQLite and its own interpreter state. Forking from a
  launcher that has started no threads keeps 200 children cheap (copy-on-write) and fast to
  start. ``Fleet.stop()`` ends the launcher's process group by its id, also on error.

An agent child records, for every stream entry it applied, ``(seq, order_id, t)`` where ``t``
is ``time.time()`` right after ``Agent.session_message`` returned (a handler around the
agent, through the session's public seam), i.e. after the SQLite COMMIT
of that entry (``synchronous=NORMAL``, as the agent applies stream entries); a raw child records
the time of every message. Children write their records as JSON when they are told to stop
(SIGTERM).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEPOT = "bench-depot"
T0 = dt.datetime(2024, 6, 3, 6, 0, tzinfo=dt.UTC)
"""The legacy export's as_of; every later change is newer."""


# --- small helpers --------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def rss_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in KiB; PSS shares copy-on-write pages fairly."""
    rss = pss = 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


def children_of(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(p) for p in text.split()]
    return []


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its reaped children (from /proc/PID/stat)."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
        return ticks / os.sysconf("SC_CLK_TCK")
    return 0.0


def table(rows: Sequence[tuple[str, str]], title: str) -> str:
    width = max(len(k) for k, _ in rows)
    lines = [title, "-" * len(title)]
    lines += [f"{k:<{width}}  {v}" for k, v in rows]
    return "\n".join(lines)


# --- broker ---------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_bench_broker(data_dir: Path) -> Any:
    from gateway.broker.conf import BrokerSettings
    from gateway.broker.process import ManagedBroker

    settings = BrokerSettings(
        data_dir=data_dir, host="127.0.0.1", port=free_port(), allow_anonymous=True, acl=False,
        persistence=False, max_queued_messages=1_000_000, max_inflight_messages=100,
    )
    broker = ManagedBroker(settings, (), DEPOT)
    broker.start(10)
    return broker


# --- the gateway ----------------------------------------------------------------------------


def driver_id(d: int) -> str:
    return f"D{d:03d}"


def device_id(d: int) -> str:
    return f"tab{d:03d}"


def order_id(d: int, i: int) -> str:
    return f"O{d:03d}-{i:04d}"


def stop_vals(d: int, i: int, *, minutes_late: int = 0) -> dict[str, Any]:
    """One stop as the legacy export has it (ETAs 90 s apart: no shift-hours warnings)."""
    eta = T0 + dt.timedelta(hours=2, seconds=90 * i + 60 * minutes_late)
    return {"driver": driver_id(d), "sequence": i + 1, "status": "planned",
            "eta": eta.isoformat(), "address": f"Lindenstrasse {i % 180 + 1}, 10{d:03d} Berlin",
            "customer": f"Customer {d}-{i}", "load": 1.5}


def add_changes(store: Any, ks: range, drivers: int, orders: int, now: dt.datetime) -> None:
    """Changes ``ks`` as the legacy export's next runs bring them, in one transaction: change
    ``k`` is a new claim set (a later ETA) for stop ``k % drivers, (k // drivers) % orders``, in
    run 2 for the first ``drivers x orders`` changes, run 3 for the next, and so on. Written
    as an ingest run writes what changed (``gateway.store.runs.write_new_claim_sets``: one
    statement, one HLC stamp per run)."""
    from gateway.store.runs import NewClaimSet, write_new_claim_sets

    sets = []
    for k in ks:
        d, i, run = k % drivers, (k // drivers) % orders, 2 + k // (drivers * orders)
        sets.append(NewClaimSet(
            set_id=f"legacy:run{run}:{order_id(d, i)}", source="legacy",
            order_id=order_id(d, i), source_rev=f"run{run}",
            as_of=T0 + dt.timedelta(hours=run), received_at=now,
            vals=stop_vals(d, i, minutes_late=run)))
    with store.transaction():
        write_new_claim_sets(store, sets, hlc=store.next_hlc(now))


GATEWAY_TOML = """\
depot = "{depot}"
db = "gateway.sqlite"

[broker]
url = "mqtt://{host}:{port}"

[policy]
changelog_keep = {keep}

[[sources]]
name = "legacy"
kind = "csv"
path = "export/orders.csv"
mapping = "legacy.mapping.toml"
"""

MAPPING = """\
required = ["status"]

[columns]
order_id = "ORDER_ID"
driver = "DRIVER_ID"
status = "STATUS"
"""


@dataclass
class BenchGateway:
    root: Path
    host: str
    port: int
    drivers: int
    orders: int
    keep: int = 100_000

    def __post_init__(self) -> None:
        from gateway.config import load_config

        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "legacy.mapping.toml").write_text(MAPPING, encoding="utf-8")
        (self.root / "gateway.toml").write_text(GATEWAY_TOML.format(
            depot=DEPOT, host=self.host, port=self.port, keep=self.keep), encoding="utf-8")
        self.cfg = load_config(self.root / "gateway.toml")
        self.service: Any = None

    def populate(self, *, progress: Callable[[str], None] = print) -> None:
        """Legacy claims for every stop, merged views, one device per driver, each stream
        compacted so a new tablet starts from a snapshot of its route."""
        from gateway.store.core import Store
        from gateway.store.devices import DeviceStore
        from gateway.streams.views import refresh, sync_driver

        policy = self.cfg.merge_policy()
        now = T0 + dt.timedelta(minutes=5)
        with Store(self.cfg.db_path) as store:
            t = time.perf_counter()
            with store.transaction():
                for d in range(self.drivers):
                    for i in range(self.orders):
                        store.add_claim_set(
                            set_id=f"legacy:run1:{order_id(d, i)}", source="legacy",
                            order_id=order_id(d, i), vals=stop_vals(d, i), as_of=T0,
                            received_at=now, hlc=store.next_hlc(now), source_rev="run1")
            refresh(store, policy, now)
            progress(f"  store: {self.drivers * self.orders} stops merged "
                     f"in {time.perf_counter() - t:.1f} s")
            t = time.perf_counter()
            devices = DeviceStore(store)
            for d in range(self.drivers):
                with store.transaction():
                    devices.add(device_id(d), driver_id(d), "pw", now)
                sync_driver(store, driver_id(d), policy, now)
                with store.transaction():
                    devices.compact(device_id(d), 0)
            progress(f"  store: {self.drivers} devices registered, streams compacted "
                     f"in {time.perf_counter() - t:.1f} s")

    def start(self, *, watchers: Sequence[Callable[[Any], None]] = (), **kwargs: Any) -> None:
        """Start the gateway's service; ``watchers`` are handed to ``GatewayService.watch``."""
        from gateway.streams.service import GatewayService

        self.service = GatewayService(self.cfg, host=self.host, port=self.port, tick_s=0.2,
                                      status_interval_s=5.0, **kwargs)
        for watcher in watchers:
            self.service.watch(watcher)
        self.service.start()
        if not self.service.link.wait_connected(10):
            raise RuntimeError("the gateway did not connect to the broker")

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
            self.service = None

    def streams(self) -> dict[str, tuple[int, int]]:
        """device -> (last_seq, applied_seq), read on the worker thread."""
        from gateway.store.devices import DeviceStore

        result: dict[str, tuple[int, int]] = self.service.call(
            lambda store: DeviceStore(store).positions(), timeout=120)
        return result

    def agent_specs(self, devices: Sequence[int], out_dir: Path) -> list[dict[str, Any]]:
        out_dir.mkdir(parents=True, exist_ok=True)
        return [{"device": device_id(d), "driver": driver_id(d),
                 "db": str(out_dir / f"{device_id(d)}.sqlite"),
                 "out": str(out_dir / f"{device_id(d)}.json")} for d in devices]


# --- fleets of processes --------------------------------------------------------------------


class Fleet:
    """A launcher process that forks one child per spec; see the module docstring."""

    def __init__(self, kind: str, host: str, port: int, specs: list[dict[str, Any]],
                 work: Path, **extra: Any) -> None:
        self.kind, self.specs, self.work = kind, specs, work
        work.mkdir(parents=True, exist_ok=True)
        self.spec_file = work / f"{kind}-fleet.json"
        self.spec_file.write_text(json.dumps({"kind": kind, "host": host, "port": port,
                                              "depot": DEPOT, "children": specs, **extra}))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench._depot", "fleet", str(self.spec_file)],
            cwd=str(ROOT), start_new_session=True)

    def ready(self) -> int:
        return sum(1 for s in self.specs if Path(s["out"] + ".ready").exists())

    def wait_ready(self, timeout: float) -> bool:
        return wait_until(lambda: self.ready() == len(self.specs), timeout, 0.2)

    def memory(self) -> tuple[int, int, int]:
        """(children, sum of RSS KiB, sum of PSS KiB) of the launcher's children."""
        if self.proc is None:
            return 0, 0, 0
        kids = children_of(self.proc.pid)
        sizes = [rss_kib(p) for p in kids]
        return len(kids), sum(r for r, _ in sizes), sum(p for _, p in sizes)

    def cpu(self) -> float:
        if self.proc is None:
            return 0.0
        return sum(cpu_seconds(p) for p in children_of(self.proc.pid))

    def stop(self, timeout: float = 60.0) -> list[dict[str, Any]]:
        """SIGTERM the launcher (it stops its children, which write their records); results."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        if proc is not None:  # a child left behind after its launcher died
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        self.proc = None
        results = []
        for spec in self.specs:
            path = Path(spec["out"])
            if path.exists():
                results.append(json.loads(path.read_text()))
        return results


@contextlib.contextmanager
def running(fleet: Fleet) -> Iterator[Fleet]:
    fleet.start()
    try:
        yield fleet
    finally:
        fleet.stop()


# --- inside the launcher and its children ---------------------------------------------------


def _launch(spec_file: Path) -> None:
    spec = json.loads(spec_file.read_text())
    child = _agent_child if spec["kind"] == "agent" else _raw_child
    if spec["kind"] == "agent":  # import once, before forking
        import agent.service  # noqa: F401
    else:
        import paho.mqtt.client  # noqa: F401
    pids: list[int] = []
    stop = False

    def on_term(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    for index, item in enumerate(spec["children"]):
        if stop:
            break
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                child(spec, {**item, "index": index})
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    while not stop and any(_alive(p) for p in pids):
        time.sleep(0.2)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 50
    for pid in pids:
        while time.monotonic() < deadline:
            if not _alive(pid):
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        done, _status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == 0


def _wait_term() -> None:
    import threading

    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda _s, _f: stopped.set())
    while not stopped.wait(1.0):
        pass


def _agent_child(spec: dict[str, Any], item: dict[str, Any]) -> None:
    from agent.config import AgentConfig
    from agent.service import Agent
    from agent.session import Incoming, MqttSession, SessionSettings, Transport
    from sync.envelope import SnapshotMsg, ViewChangeMsg, ViewChangesMsg
    from sync.errors import CodecError

    records: list[tuple[int, str, float]] = []
    snapshots: list[tuple[int, int, float]] = []

    class Recorder:
        """The session's handler: hands every call to the agent, then records what a stream
        message applied (``Agent.applied_seq()`` after ``session_message`` returned, i.e. after
        the entries' COMMIT)."""

        def __init__(self, agent: Agent) -> None:
            self.agent = agent

        def session_online(self) -> None:
            self.agent.session_online()

        def session_offline(self, reason: str) -> None:
            self.agent.session_offline(reason)

        def session_bad_message(self, topic: str, error: CodecError) -> None:
            self.agent.session_bad_message(topic, error)

        def session_message(self, incoming: Incoming) -> None:
            self.agent.session_message(incoming)  # returns after the entries' COMMIT
            env = incoming.envelope
            if isinstance(env, ViewChangeMsg | ViewChangesMsg):
                now = time.time()
                applied = self.agent.applied_seq()
                entries = env.body.entries if isinstance(env, ViewChangesMsg) else (env.body,)
                for entry in entries:  # the ones this message applied
                    if (not records or entry.seq > records[-1][0]) and entry.seq <= applied:
                        records.append((entry.seq, entry.order_id, now))
            elif isinstance(env, SnapshotMsg):
                snapshots.append((env.body.seq, len(env.body.views), time.time()))

    def recording_session(settings: SessionSettings, agent: Agent) -> Transport:
        return MqttSession(settings, Recorder(agent))

    config = AgentConfig.model_validate({
        "depot": spec["depot"], "device": item["device"], "driver": item["driver"],
        "db": item["db"], "broker": {"host": spec["host"], "port": spec["port"]},
        "sync": {"resync_quiet_s": 30, "backoff_min_s": 0.2, "backoff_max_s": 2.0},
    })
    profiler = _AgentProfiler.maybe(item)
    agent = Agent(config, transport=recording_session)
    agent.start()
    agent.wait_online(60)
    Path(item["out"] + ".ready").write_text("")
    usage = _usage()
    try:
        _wait_term()
    finally:
        usage = {k: v - usage[k] for k, v in _usage().items()}
        agent.stop()
        if profiler is not None:
            profiler.dump()
        Path(item["out"]).write_text(json.dumps({
            "device": item["device"], "records": records, "snapshots": snapshots,
            "usage": usage}))


def _usage() -> dict[str, float]:
    """This process's CPU, page faults and context switches, and the collections GC ran."""
    import gc
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"utime": ru.ru_utime, "stime": ru.ru_stime, "minflt": ru.ru_minflt,
            "nvcsw": ru.ru_nvcsw, "nivcsw": ru.ru_nivcsw,
            **{f"gc{g}": s["collections"] for g, s in enumerate(gc.get_stats())}}


class _AgentProfiler:
    """Opt-in: ``CROSSDOCK_BENCH_PROFILE_AGENT=N`` (a child's index in the fleet, or a comma
    list) profiles agent N over ALL its threads (paho's network thread, the ticker, the main
    thread) with yappi's CPU clock, from before the agent starts until it is told to stop, and
    writes ``crossdock-agent-N.prof.txt`` (functions by own and by total time, threads) and
    ``.prof`` (pstats) to ``$CROSSDOCK_BENCH_PROFILE_DIR`` (default: the temp dir; the
    bench's own work dir is deleted at its end).
    yappi is a bench-only tool: ``.venv/bin/pip install yappi``; it is not a dependency."""

    def __init__(self, out: str) -> None:
        import yappi  # type: ignore[import-not-found,unused-ignore]

        self.yappi, self.out = yappi, out
        yappi.set_clock_type("cpu")
        yappi.start(builtins=True, profile_threads=True)

    @classmethod
    def maybe(cls, item: dict[str, Any]) -> _AgentProfiler | None:
        wanted = os.environ.get("CROSSDOCK_BENCH_PROFILE_AGENT", "")
        if str(item.get("index")) not in {w.strip() for w in wanted.split(",") if w.strip()}:
            return None
        import tempfile

        out_dir = Path(os.environ.get("CROSSDOCK_BENCH_PROFILE_DIR") or tempfile.gettempdir())
        return cls(str(out_dir / f"crossdock-agent-{item['index']}"))

    def dump(self) -> None:
        import io

        yappi = self.yappi
        yappi.stop()
        buf = io.StringIO()
        stats = yappi.get_func_stats()
        for sort in ("tsub", "ttot"):
            buf.write(f"=== all threads, by {sort} ===\n")
            stats.sort(sort, "desc").print_all(out=buf, columns={
                0: ("name", 90), 1: ("ncall", 10), 2: ("tsub", 8), 3: ("ttot", 8),
                4: ("tavg", 8)})
        buf.write("=== threads ===\n")
        yappi.get_thread_stats().print_all(out=buf)
        Path(self.out + ".prof.txt").write_text(buf.getvalue())
        stats.save(self.out + ".prof", type="pstat")
        print(f"agent profile: {self.out}.prof.txt", file=sys.stderr)


def _raw_child(spec: dict[str, Any], item: dict[str, Any]) -> None:
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    times: list[float] = []
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=item["client_id"],
                         protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, *_a: c.subscribe(item["topic"], qos=1)
    client.on_subscribe = lambda *_a: subscribed.set()
    client.on_message = lambda *_a: times.append(time.time())
    client.connect(spec["host"], spec["port"], keepalive=30)
    client.loop_start()
    if subscribed.wait(60):
        Path(item["out"] + ".ready").write_text("")
    try:
        _wait_term()
    finally:
        client.disconnect()
        client.loop_stop()
        Path(item["out"]).write_text(json.dumps({"topic": item["topic"], "times": times}))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "fleet":
        _launch(Path(sys.argv[2]))
    else:
        sys.exit("usage: python -m bench._depot fleet SPEC.json")
