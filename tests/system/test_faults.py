"""Faults against the real gateway and real agents, on the in-memory broker and on a real
Mosquitto (the ``network`` fixture): a broker crash mid-stream, an agent killed before its
publish and between publish and ack, a broker whose tiny queue drops messages. Each scenario
shows that its fault happened (a gap seen, a replay served, a message dropped, the event still
pending after the restart) and ends where it would have without the fault -- an end state that
only the repair reaches: every export changes one more order and no later one rewrites it, so
an entry lost and never repaired stays wrong on the tablet.

Over Mosquitto a killed agent is a SIGKILLed process; in memory it is an agent whose connection
is severed (its will goes out, it never sends again) and which is then only closed."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.model import Change
from agent.service import Agent
from agent.session import Outgoing, SessionSettings, Transport
from gateway.store.devices import DeviceStore
from sync.codec import decode
from sync.envelope import DriverEventMsg
from sync.membroker import Chaos, MemBroker
from sync.topics import Topics
from tests.agent.dying import DIE_BEFORE_PUBLISH
from tests.broker import BrokerFactory
from tests.conftest import NETWORKS
from tests.memnet import MemNetwork
from tests.system.depot import (
    Depot,
    in_step,
    pause_gateway,
    reopen,
    resume_gateway,
    values,
    wait_for,
    write_agent_config,
)
from tests.system.networks import MosquittoNetwork, Network

REPO = Path(__file__).resolve().parents[2]
TOPICS = Topics("test-depot")
ORDERS = [f"O{n:03d}" for n in range(60)]
TAB7 = [o for n, o in enumerate(ORDERS) if n % 7]  # driver 7's orders; the others are 12's
CONVERGE_S = 30.0
QUIET_S = 3.0


def export_rows(version: int) -> list[tuple[str, str, int, str]]:
    """Version ``version`` of the legacy export: driver 7 has delivered his first ``version``
    stops. Each version changes exactly one of his orders, and no later one changes it back."""
    delivered = set(TAB7[:version])
    return [(o, "7" if n % 7 else "12", n + 1, "DELIVERED" if o in delivered else "PLANNED")
            for n, o in enumerate(ORDERS)]


def expected(version: int) -> dict[str, tuple[Any, ...]]:
    """The no-fault end state of driver 7's tablet after export ``version``: order → values."""
    status = {"DELIVERED": "delivered", "PLANNED": "planned"}
    return {o: (d, s, status[st]) for o, d, s, st in export_rows(version) if d == "7"}


def _fields(agent: Agent) -> dict[str, tuple[Any, ...]]:
    return values(agent, "driver", "sequence", "status")


def _converged(depot: Depot, agent: Agent, version: int) -> bool:
    return _fields(agent) == expected(version) and in_step(depot, agent, "tab-7")


def _started(depot: Depot) -> Agent:
    depot.export(export_rows(0))
    tab = depot.add_device("tab-7", "7")
    depot.add_device("tab-12", "12")
    assert wait_for(lambda: _converged(depot, tab, 0), CONVERGE_S)
    return tab


def _gateway_counter(depot: Depot, name: str) -> int:
    depot.service.call(lambda store: None)  # what the worker was handling is counted
    with depot.store() as store:
        return DeviceStore(store).counters().get(name, 0)


def _saved(depot: Depot, network: Network, tab: Agent | None = None) -> None:
    """The broker saves its sessions (a clean restart of a Mosquitto), so that a kill later
    loses only the messages queued since; then everyone is back online."""
    network.save()
    assert wait_for(lambda: depot.service.link.connected.is_set(), CONVERGE_S)
    if tab is not None:
        assert tab.wait_online(CONVERGE_S)


def test_broker_killed_and_restarted_mid_stream_ends_as_without_the_fault(
        depot: Depot, network: Network) -> None:
    tab = _started(depot)
    _saved(depot, network, tab)
    assert wait_for(lambda: _converged(depot, tab, 0), CONVERGE_S)
    replays = _gateway_counter(depot, "replays")
    depot.service.coalesce_s = 0  # every refresh's entries go out at once, none held back
    tab.stop()  # away: its session keeps what the gateway streams to it, in the broker's memory
    for version in range(1, 5):
        depot.export(export_rows(version))
    depot.service.call(lambda store: None)
    network.kill()  # ... and the broker dies with those queued: they are lost
    for version in range(5, 7):
        depot.export(export_rows(version))  # the gateway streams into a dead link
    network.restart()
    assert wait_for(lambda: depot.service.link.connected.is_set(), CONVERGE_S)
    for version in range(7, 9):
        depot.export(export_rows(version))  # queued for the tablet: after the lost ones
    depot.service.call(lambda store: None)
    tab = reopen(depot, "tab-7", "7")
    for version in range(9, 13):
        depot.export(export_rows(version))
    assert wait_for(lambda: _converged(depot, tab, 12), CONVERGE_S), (
        _fields(tab), tab.sync_status())
    assert tab.sync_status().outbox_size == 0
    # the fault happened: the stream came back with a hole, the gateway replayed it
    assert tab.sync_status().counters.get("gaps", 0) >= 1, tab.sync_status().counters
    assert _gateway_counter(depot, "replays") > replays
    if isinstance(network, MemNetwork):
        assert network.broker.stats["lost_in_crash"] >= 1


_PUBLISH_THEN_WAIT = textwrap.dedent(
    """
    import sys, time
    from agent.config import load_config
    from agent.service import Agent

    agent = Agent(load_config(sys.argv[1]))
    agent.start()
    assert agent.wait_online(30), "offline"
    print(agent.act("deliver", sys.argv[2]), flush=True)
    time.sleep(120)  # killed by the test long before
    """
)


def _events(depot: Depot, order_id: str) -> tuple[int, int, int]:
    """(events stored, driver claims, write-back rows) for one order."""
    with depot.store() as store:
        events = store.conn.execute(
            "SELECT count(*) FROM events WHERE order_id=? AND action='deliver'",
            (order_id,)).fetchone()[0]
        claims = store.conn.execute(
            "SELECT count(*) FROM claim_sets WHERE source='driver' AND order_id=?",
            (order_id,)).fetchone()[0]
        results = [r for r in store.pending_results() if r["order_id"] == order_id]
    return events, claims, len(results)


def _delivered_once(depot: Depot, tab: Agent, order_id: str) -> None:
    assert wait_for(lambda: tab.sync_status().outbox_size == 0, CONVERGE_S), tab.pending()
    assert wait_for(lambda: any(s.order_id == order_id and s.view.value("status") == "delivered"
                                for s in tab.route()), CONVERGE_S)
    assert wait_for(lambda: in_step(depot, tab, "tab-7"), CONVERGE_S)
    assert _events(depot, order_id) == (1, 1, 1)
    want = expected(0)
    want[order_id] = (*want[order_id][:2], "delivered")
    assert _fields(tab) == want


def _first_planned() -> str:
    return next(o for o, (_d, _s, st) in expected(0).items() if st == "planned")


class _DieBeforeDriverEvent:
    """In memory, ``DIE_BEFORE_PUBLISH``'s transport: the connection dies just before a driver
    event would go out, and nothing is sent after."""

    def __init__(self, network: MemNetwork, inner: Transport, client_id: str) -> None:
        self.network, self.inner, self.client_id = network, inner, client_id

    @property
    def connected(self) -> bool:
        return self.inner.connected

    def start(self) -> None:
        self.inner.start()

    def stop(self, *, final: Outgoing | None = None) -> None:
        self.inner.stop(final=final)

    def publish(self, message: Outgoing) -> bool:
        if b'"driver_event"' in message.payload:
            self.network.sever(self.client_id)
        return self.inner.publish(message)


def test_agent_killed_between_local_write_and_publish_delivers_exactly_once(
        depot: Depot, network: Network) -> None:
    depot.export(export_rows(0))
    depot.add_device("tab-12", "12")
    order_id = _first_planned()
    if isinstance(network, MosquittoNetwork):
        depot.add_device("tab-7", "7", start=False).stop()  # registered; the process runs it
        died = subprocess.run(
            [sys.executable, "-c", DIE_BEFORE_PUBLISH,
             str(write_agent_config(depot, "tab-7", "7")), order_id],
            cwd=REPO, capture_output=True, timeout=60, check=False)
        assert died.returncode == -signal.SIGKILL, died.stderr.decode()
    else:
        assert isinstance(network, MemNetwork)

        def dying(settings: SessionSettings, agent: Agent) -> Transport:
            return _DieBeforeDriverEvent(network, network.transport(settings, agent),
                                         settings.client_id)

        depot.transport = dying
        doomed = depot.add_device("tab-7", "7")
        depot.transport = network.transport
        assert doomed.wait_for(lambda: any(s.order_id == order_id for s in doomed.route()),
                               CONVERGE_S)
        doomed.act("deliver", order_id)
        doomed.stop()
    depot.service.call(lambda store: None)
    assert _events(depot, order_id) == (0, 0, 0)  # it never went out

    tab = reopen(depot, "tab-7", "7", start=False)
    assert [item.event.order_id for item in tab.pending()] == [order_id]
    tab.start()
    _delivered_once(depot, tab, order_id)


def _publish_then_die(depot: Depot, network: Network, order_id: str) -> str:
    """The tablet's agent delivers ``order_id``, the broker takes the event, and the agent
    dies before any ack (the gateway is paused). Returns the event id."""
    with network.probe(f"probe-{uuid.uuid4().hex[:8]}") as probe:
        probe.subscribe(TOPICS.outbox("tab-7"))
        if isinstance(network, MosquittoNetwork):
            process = subprocess.Popen(
                [sys.executable, "-c", _PUBLISH_THEN_WAIT,
                 str(write_agent_config(depot, "tab-7", "7")), order_id],
                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        else:
            agent = reopen(depot, "tab-7", "7")
            assert agent.wait_online(CONVERGE_S)
        try:
            if isinstance(network, MosquittoNetwork):
                assert process.stdout is not None
                event_id = process.stdout.readline().decode().strip()
                assert event_id, process.stderr.read().decode() if process.stderr else ""
            else:
                event_id = agent.act("deliver", order_id)

            def published() -> bool:
                message = probe.get(0.5)
                if message is None:
                    return False
                env = decode(bytes(message.payload))
                return isinstance(env, DriverEventMsg) and env.body.event_id == event_id

            assert wait_for(published, CONVERGE_S)  # the broker has it...
        finally:  # ...and the agent dies before any ack
            if isinstance(network, MosquittoNetwork):
                process.send_signal(signal.SIGKILL)
                process.communicate(timeout=10)
            else:
                assert isinstance(network, MemNetwork)
                network.sever("crossdock-tab-7")
                agent.stop()  # severed: it sends nothing more; this closes its store
    if isinstance(network, MosquittoNetwork):
        assert process.returncode == -signal.SIGKILL
    return event_id


def test_agent_killed_between_publish_and_ack_delivers_exactly_once(
        depot: Depot, network: Network) -> None:
    tab = _started(depot)
    _saved(depot, network, tab)
    tab.stop()
    order_id = _first_planned()
    pause_gateway(depot)  # what the agent publishes now waits in the gateway's session...
    event_id = _publish_then_die(depot, network, order_id)
    network.kill()  # ... and is lost with the broker: only the tablet's outbox still has it
    network.restart()
    if isinstance(network, MemNetwork):
        assert network.broker.stats["lost_in_crash"] >= 1

    resume_gateway(depot)
    depot.service.call(lambda store: None)
    tab = reopen(depot, "tab-7", "7", start=False)
    assert [item.event_id for item in tab.pending()] == [event_id]  # still pending
    tab.start()
    _delivered_once(depot, tab, order_id)
    with depot.store() as store:
        assert DeviceStore(store).event_outcome("tab-7", event_id) == "applied"


@pytest.fixture(params=NETWORKS)
def tiny_queue_depot(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Depot]:
    """A depot whose broker keeps 20 messages in flight and 5 queued per client, no more."""
    network: MemNetwork | MosquittoNetwork
    if request.param == "memory":
        network = MemNetwork(MemBroker(max_inflight=20, max_queued=5))
        factory = None
    else:
        factory = BrokerFactory(tmp_path / "brokers")
        network = MosquittoNetwork(factory(max_queued_messages=5, max_inflight_messages=20))
    d = Depot(tmp_path / "tiny", network=network)
    d.start()
    try:
        yield d
    finally:
        d.stop()
        if factory is not None:
            factory.close()
        if isinstance(network, MemNetwork):
            network.close()


def test_a_broker_dropping_queued_messages_converges_through_gap_repair(
        tiny_queue_depot: Depot) -> None:
    # A tablet that stops reading (its network thread busy) while the gateway streams: the
    # broker keeps 20 in flight + 5 queued and drops the rest, with no error to anyone. The
    # tablet learns of it from the next entry that does arrive: a gap, repaired by a replay.
    depot = tiny_queue_depot
    network = depot.network
    assert network is not None
    tab = _started(depot)
    depot.service.coalesce_s = 0  # one message per export, at once
    depot.service.ingest_settle_s = 0
    replays = _gateway_counter(depot, "replays")
    release, stalled = threading.Event(), threading.Event()

    def busy(_change: Change) -> None:
        if threading.current_thread().name.startswith(("paho", "Thread", "memnet")):
            stalled.set()
            release.wait(CONVERGE_S)

    unsubscribe = tab.subscribe(busy)
    try:
        depot.export(export_rows(1))
        assert stalled.wait(CONVERGE_S)
        for version in range(2, 41):  # 39 messages to a tablet that takes none
            depot.export(export_rows(version))
        depot.service.call(lambda store: None)
        if isinstance(network, MemNetwork):
            assert wait_for(lambda: network.broker.stats["dropped_queue_full"] >= 10)
        else:
            assert isinstance(network, MosquittoNetwork)
            assert wait_for(lambda: "Outgoing messages are being dropped" in network.log())
    finally:
        unsubscribe()
        release.set()
    depot.export(export_rows(41))  # the next entry shows the tablet what it missed
    assert wait_for(lambda: _converged(depot, tab, 41), CONVERGE_S), (
        _fields(tab), tab.sync_status())
    assert tab.sync_status().counters.get("gaps", 0) >= 1, tab.sync_status().counters
    assert _gateway_counter(depot, "replays") > replays


@pytest.fixture
def chaos_depot(tmp_path: Path) -> Iterator[Depot]:
    """In memory only: a broker that drops, duplicates and reorders the tablets' stream
    messages at random, from a fixed seed (the same faults every run)."""
    chaos = Chaos(random.Random(9), drop=0.15, duplicate=0.25, reorder=0.2,
                  topics=f"{TOPICS.root}/devices/+/inbox")
    network = MemNetwork(MemBroker(chaos=chaos))
    d = Depot(tmp_path / "chaos", network=network)
    d.start()
    try:
        yield d
    finally:
        d.stop()
        network.close()


def test_a_broker_that_drops_duplicates_and_reorders_still_converges(
        chaos_depot: Depot) -> None:
    depot = chaos_depot
    assert isinstance(depot.network, MemNetwork)
    broker = depot.network.broker
    depot.export(export_rows(0))
    tab = depot.add_device("tab-7", "7", resync_quiet_s=QUIET_S)  # a dropped tail: asked again
    depot.add_device("tab-12", "12")
    depot.service.coalesce_s = 0  # a message per export: many for the faults to hit
    depot.service.ingest_settle_s = 0
    for version in range(1, 31):
        depot.export(export_rows(version))
    assert wait_for(lambda: _converged(depot, tab, 30), CONVERGE_S), (
        _fields(tab), tab.sync_status(), dict(broker.stats))
    counters = tab.sync_status().counters
    assert min(depot.network.call(lambda b: (b.stats["dropped_by_fault"], b.stats["duplicated"],
                                             b.stats["reordered"]))) > 0  # type: ignore[type-var]
    assert counters.get("duplicates", 0) >= 1, counters  # a duplicate counted and dropped
    assert counters.get("gaps", 0) >= 1, counters  # a loss seen
    assert _gateway_counter(depot, "replays") >= 2  # the first catch-up and at least a repair
