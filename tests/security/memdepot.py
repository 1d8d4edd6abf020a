"""An in-memory depot for the fuzz tests: the ``gateway sample`` depot's gateway and one tablet
(tab-a, DRV-001) on ``tests.memnet``'s network, each with a way to send one message and wait
until it was handled, and a look at everything stored (``state()``).

The gateway has tab-a (DRV-001), tab-b (DRV-002) and tab-r (revoked) registered; its store
is ingested and merged before it starts. The tablet has a route (a snapshot) and three
actions in its outbox. Both keep their stores in memory (``fuzzing.fast_dir``)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.config import AgentConfig
from agent.service import Agent
from agent.session import Incoming, SessionSettings, Transport
from gateway.config import GatewayConfig, load_config
from gateway.ingest.pipeline import ingest_source
from gateway.setup import write_sample_config
from gateway.store.core import Store
from gateway.store.devices import DeviceStore
from gateway.streams.service import GatewayService
from gateway.streams.views import refresh
from sync.codec import decode
from sync.errors import CodecError
from sync.membroker import matches
from sync.topics import Topics
from tests.memnet import MemNetwork
from tests.security.fuzzing import Seed, envelope

DEPOT = "fz"
TOPICS = Topics(DEPOT)
HLC = "001795777200000-000000-gateway"
AT = "2026-12-01T08:00:00+00:00"


class Tracebacks(logging.Handler):
    """Every record logged with an exception (a crash some ``except`` swallowed)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.seen.append(self.format(record)[-2000:])


# --- the gateway ------------------------------------------------------------------------------

REFUSALS = ("bad_messages", "unauthorized_messages", "refused_events", "duplicate_events",
            "refused_commands", "revoked_messages")
RECORDS = ("events", "commands", "audit", "changelog")
"""Tables compared by count and size (they only grow); every other one row for row."""
KEPT = ("claim_sets", "source_state", "resolutions", "views", "route_members", "devices",
        "streams", "device_orders", "dismissals", "proposals", "writeback", "device_status",
        "quarantine", "runs")
"""(meta too, but its ``hlc``: the gateway's clock, which every stamped reply moves on)"""


def _gateway_state(store: Store) -> tuple[dict[str, int], dict[str, Any]]:
    conn = store.conn
    rows: dict[str, Any] = {t: hash(tuple(conn.execute(f"SELECT * FROM {t}").fetchall()))
                            for t in KEPT}
    rows["meta"] = hash(tuple(conn.execute("SELECT * FROM meta WHERE key != 'hlc'")))
    for t in RECORDS:
        rows[t] = int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
    return DeviceStore(store).counters(), rows


class FuzzGateway:
    """The sample depot's gateway on an in-memory network; ``send`` one message, in order."""

    def __init__(self, root: Path) -> None:
        now = dt.datetime.now(dt.UTC)
        write_sample_config(root, drivers=2, orders=8, seed=3, depot=DEPOT, port=1883, now=now)
        self.cfg: GatewayConfig = load_config(root / "gateway.toml")
        with Store(self.cfg.db_path) as store:
            ingest_source(store, self.cfg, self.cfg.sources[0], now=lambda: now, parallel=False)
            refresh(store, self.cfg.merge_policy(), now)  # settled before the first example
            devices = DeviceStore(store)
            with store.transaction():
                devices.add("tab-a", "DRV-001", "pw", now)
                devices.add("tab-b", "DRV-002", "pw", now)
                devices.add("tab-r", "DRV-001", "pw", now)
                devices.revoke("tab-r", now)
            self.route = devices.route("DRV-001")
            self.orders = [r[0] for r in store.conn.execute("SELECT order_id FROM views")]
            self.view = json.loads(store.view_bodies([self.route[0]])[self.route[0]])
        self.net = MemNetwork()
        self.delivered = threading.Semaphore(0)
        self.service = GatewayService(self.cfg, host=self.net.host, port=self.net.port,
                                      status_interval_s=3600, event_rate=1e9,
                                      event_burst=10**9, link=self._link)
        # no event rate limit here: an event held during one example and handled during a
        # later one would blur which input wrote what (the limit has test_limits.py)
        self.service.start()
        assert self.service.link.wait_connected(10)
        self.subscriptions = [TOPICS.all_outboxes, TOPICS.all_device_status, TOPICS.commands]
        self.probe = self.net.probe("fuzzer")
        self.state()  # served after the connect's refresh

    def _link(self, settings: Any, *, on_message: Callable[[str, bytes], None],
              **options: Any) -> Any:
        def counted(topic: str, payload: bytes) -> None:
            on_message(topic, payload)
            self.delivered.release()

        return self.net.link(settings, on_message=counted, **options)

    def send(self, topic: str, payload: bytes) -> str:
        """Over the in-memory broker when the gateway subscribes to ``topic``, else handed to
        its link's callback as a broker not ours might; returns which."""
        if any(matches(f, topic) for f in self.subscriptions):
            self.probe.publish(topic, payload)
            assert self.delivered.acquire(timeout=30), topic
            return "broker"
        self.service.receive(topic, payload)
        return "direct"

    def state(self) -> tuple[dict[str, int], dict[str, Any]]:
        result: tuple[dict[str, int], dict[str, Any]] = self.service.call(_gateway_state)
        return result

    def seeds(self) -> list[Seed]:
        """A valid message of each kind the gateway takes, on its topic (and one it must
        refuse: a view change on an outbox)."""
        event = {"event_id": "ev-1", "order_id": self.route[0], "action": "arrive", "at": AT,
                 "note": "n", "based_on": []}
        cmd = {"client": "dispatch", "action": "assign", "order_id": self.orders[-1],
               "driver": "DRV-002"}
        a, b = TOPICS.outbox("tab-a"), TOPICS.outbox("tab-b")
        return [(a, envelope("driver_event", event, "tab-a", HLC)),
                (b, envelope("driver_event", {**event, "action": "deliver",
                                              "event_id": "ev-2"}, "tab-b", HLC)),
                (TOPICS.outbox("tab-r"), envelope("driver_event", event, "tab-r", HLC)),
                (a, envelope("resync", {"after": 0}, "tab-a", HLC)),
                (a, envelope("applied", {"seq": 1}, "tab-a", HLC)),
                (TOPICS.device_status("tab-a"), envelope(
                    "status", {"role": "device", "online": True, "at": AT,
                               "app_version": "0.3.0"}, "tab-a", HLC)),
                (TOPICS.commands, envelope("dispatch_command", cmd, "dispatch", HLC)),
                (TOPICS.commands, envelope(
                    "dispatch_command", {"client": "dispatch", "action": "resolve",
                                         "order_id": self.route[0], "field": "status",
                                         "choose": "legacy"}, "dispatch", HLC)),
                (a, envelope("view_change", {"seq": 1, "order_id": self.route[0],
                                             "view": self.view}, "tab-a", HLC))]


class _Counted:
    """The agent's session handler, telling the test when each delivery was handled."""

    def __init__(self, inner: Agent, done: threading.Semaphore) -> None:
        self.inner, self.done = inner, done

    def session_online(self) -> None:
        self.inner.session_online()

    def session_offline(self, reason: str) -> None:
        self.inner.session_offline(reason)

    def session_bad_message(self, topic: str, error: CodecError) -> None:
        self.inner.session_bad_message(topic, error)
        self.done.release()

    def session_message(self, incoming: Incoming) -> None:
        self.inner.session_message(incoming)
        self.done.release()


class FuzzTablet:
    """tab-a's agent on an in-memory network, with a route (a snapshot) and an outbox."""

    def __init__(self, root: Path, view: dict[str, Any]) -> None:
        self.net = MemNetwork()
        self.done = threading.Semaphore(0)
        config = AgentConfig.model_validate({
            "depot": DEPOT, "device": "tab-a", "driver": "DRV-001",
            "db": str(root / "a.sqlite"), "broker": {"host": self.net.host,
                                                     "port": self.net.port}})
        self.agent = Agent(config, transport=self._transport)
        self.agent.start()
        assert self.agent.wait_online(10)
        self.gateway = self.net.probe("crossdock-gateway-fz")
        self.view = view
        self.send(TOPICS.inbox("tab-a"), json.dumps(envelope(
            "snapshot", {"seq": 1, "views": [view]}, "gateway", HLC)).encode())
        for n in range(3):
            self.agent.act("note", view["order_id"], note=f"n{n}")
        assert [s.order_id for s in self.agent.route()] == [view["order_id"]]
        self.db = config.db
        self._ro: sqlite3.Connection | None = None

    def _transport(self, settings: SessionSettings, agent: Agent) -> Transport:
        return self.net.transport(settings, _Counted(agent, self.done))

    def send(self, topic: str, payload: bytes) -> str:
        if topic in (TOPICS.inbox("tab-a"), TOPICS.acks("tab-a"), TOPICS.gateway_status):
            self.gateway.publish(topic, payload)
            assert self.done.acquire(timeout=30), topic
            return "broker"
        handler = _Counted(self.agent, self.done)  # what the transport does with a delivery
        try:
            handler.session_message(Incoming(topic, decode(payload)))
        except CodecError as exc:
            handler.session_bad_message(topic, exc)
        self.done.acquire()
        return "direct"

    def state(self) -> tuple[dict[str, int], dict[str, Any]]:
        """The counters, and every table as it is on disk (meta: what a refusal must keep),
        read on a read-only connection of the test's own (each statement sees the last
        commit)."""
        if self._ro is None:
            self._ro = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True,
                                       check_same_thread=False)
        conn = self._ro
        rows = {t: conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall()
                for t in ("views", "local_actions", "refused")}
        # the outbox's actions, not its send bookkeeping: the agent resends on its own
        # timer (attempts, last_sent_at) whatever the fuzz does
        rows["outbox"] = conn.execute(
            "SELECT event_id, created_at, payload FROM outbox ORDER BY rowid").fetchall()
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        rows["receiver"] = json.loads(meta.get("receiver", "{}")).get("last")
        return json.loads(meta.get("counters", "{}")), rows

    def close(self) -> None:
        if self._ro is not None:
            self._ro.close()
        self.agent.stop()
        self.net.close()

    def seeds(self) -> list[Seed]:
        pending = [i.event_id for i in self.agent.pending()]
        order = self.view["order_id"]
        inbox = TOPICS.inbox("tab-a")
        return [(inbox, envelope("view_change", {"seq": 2, "order_id": order,
                                                 "view": self.view}, "gateway", HLC)),
                (inbox, envelope("view_changes", {"entries": [
                    {"seq": 2, "order_id": order, "view": self.view}], "head": 2},
                    "gateway", HLC)),
                (inbox, envelope("snapshot", {"seq": 3, "views": [self.view]}, "gateway", HLC)),
                (TOPICS.acks("tab-a"), envelope("ack", {"event_ids": pending[:1], "refused": [
                    {"event_id": pending[-1], "reason": "not on the route"}],
                    "delayed": [], "retry_after_s": 1.0}, "gateway", HLC)),
                (TOPICS.gateway_status, envelope(
                    "status", {"role": "gateway", "online": True, "at": AT,
                               "sources": [{"source": "legacy", "as_of": AT}]},
                    "gateway", HLC)),
                (inbox, envelope("dispatch_reply", {"command_id": "c", "ok": True}, "gateway",
                                 HLC))]
