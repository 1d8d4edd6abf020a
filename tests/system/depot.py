"""A whole depot in one test process: a legacy FoxPro export, the gateway service, tablets
running the real agent, and dispatch commands, all over one network: the in-memory broker or a
real Mosquitto (``tests/system/networks.py``; ``Depot(root, network=...)``)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from agent.config import AgentConfig
from agent.service import Agent, TransportMaker
from agent.session import MqttSession
from gateway.config import GatewayConfig, load_config
from gateway.dispatch import DispatchConfig, send_command
from gateway.ingest.pipeline import ingest_source, make_adapter
from gateway.sample import write_vfp_table
from gateway.store.core import Store
from gateway.store.devices import DeviceStore
from gateway.streams.mqtt import MqttLink
from gateway.streams.service import GatewayService
from gateway.streams.views import sync_driver
from sync.envelope import DispatchReplyMsg
from sync.model import OrderView
from tests.system.networks import Network

MAPPING = """\
required = ["status"]

[source]
timezone = "Europe/Berlin"
cadence = "0 0 * * *"

[columns]
order_id = "ORDER_ID"
driver = "DRIVER_ID"
sequence = "SEQ"
status = "STATUS"

[status]
planned = ["PLANNED", "Planned"]
delivered = ["DELIVERED", "DLVD"]
cancelled = ["CANC", "Cancelled"]
"""


COLUMNS = "ORDER_ID C(12); DRIVER_ID C(8); SEQ N(4,0); STATUS C(12)"


def write_orders(path: Path, rows: Iterable[tuple[Any, ...]], columns: str = COLUMNS) -> None:
    """A Visual FoxPro orders table, as the legacy system's nightly export writes it."""
    write_vfp_table(path, columns, rows)


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


class Depot:
    def __init__(self, root: Path, host: str = "", port: int = 0, *,
                 network: Network | None = None, escalate_after_min: float = 30,
                 clock: Callable[[], dt.datetime] | None = None, mapping: str = MAPPING,
                 columns: str = COLUMNS) -> None:
        """On ``network``, or (without one) on the Mosquitto at ``host:port``. ``mapping`` and
        ``columns`` (the export's DBF fields) for an export with more columns than the four the
        scenarios need (the UI tests show customers and windows)."""
        self.root = root
        self.network = network
        if network is not None:
            host, port = network.host, network.port
        self.host, self.port = host, port
        self.columns = columns
        self.link = MqttLink if network is None else network.link
        self.transport: TransportMaker = MqttSession if network is None else network.transport
        (root / "export").mkdir(parents=True, exist_ok=True)
        (root / "legacy.mapping.toml").write_text(mapping, encoding="utf-8")
        (root / "gateway.toml").write_text(
            f'depot = "test-depot"\ndb = "gateway.sqlite"\n\n[broker]\n'
            f'url = "mqtt://{host}:{port}"\n\n[policy]\n'
            f"escalate_after_min = {escalate_after_min}\n\n"
            '[[sources]]\nname = "legacy"\nkind = "foxpro"\npath = "export/orders.dbf"\n'
            'mapping = "legacy.mapping.toml"\n\n[writeback]\nkind = "csv"\npath = "import"\n',
            encoding="utf-8",
        )
        self.cfg: GatewayConfig = load_config(root / "gateway.toml")
        # this depot's own adapter, never one shared through the process-wide cache
        # (it was once keyed by source name alone: a second depot read the first's export)
        self._adapter = make_adapter(self.cfg, self.cfg.sources[0])
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.service = self.new_service()
        self.agents: list[Agent] = []
        self._lock = threading.Lock()

    def new_service(self) -> GatewayService:
        return GatewayService(self.cfg, host=self.host, port=self.port, clock=self.clock,
                              status_interval_s=0.5, tick_s=0.2, link=self.link)

    def start(self) -> None:
        self.service.start()
        assert self.service.link.wait_connected(10)

    def stop(self) -> None:
        for agent in self.agents:
            agent.stop()
        self.service.stop()

    def export(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """The legacy system writes its nightly export; the gateway reads it."""
        write_orders(self.root / "export" / "orders.dbf", rows, self.columns)
        self.ingest()

    def ingest(self) -> list[Any]:
        def run(store: Store) -> list[Any]:
            return ingest_source(store, self.cfg, self.cfg.sources[0], now=self.clock,
                                 adapter=self._adapter)

        summaries = self.service.call(run)
        self.service.request_refresh()
        return summaries

    def add_device(self, device: str, driver: str, *, start: bool = True,
                   resync_quiet_s: float = 30, timezone: str = "UTC") -> Agent:
        """Register ``device`` for ``driver`` and make its agent (on this depot's network;
        started and online unless ``start=False``); ``timezone``: its config's depot zone."""
        def register(store: Store) -> None:
            with store.transaction():
                DeviceStore(store).add(device, driver, "pw-" + device, self.clock())
            sync_driver(store, driver, self.cfg.merge_policy(), self.clock())

        self.service.call(register)
        config = agent_config(self, device, driver, resync_quiet_s=resync_quiet_s,
                              timezone=timezone)
        agent = Agent(config, transport=self.transport)
        self.agents.append(agent)
        if start:
            agent.start()
            assert agent.wait_online(10)
        return agent

    def dispatch(self, **body: Any) -> DispatchReplyMsg:
        cfg = DispatchConfig("test-depot", "anna", self.host, self.port, None, None)
        return send_command(cfg, body, timeout=10, link_maker=self.link)

    def store(self) -> Store:
        return Store(self.cfg.db_path)


# --- helpers for the fault, offline, bad-input and escalation tests ------------------------


class SteppedClock:
    """Wall-clock time plus an offset a test moves forward (``advance(minutes=31)``)."""

    def __init__(self) -> None:
        self.offset = dt.timedelta()

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += dt.timedelta(**delta)


def agent_config(depot: Depot, device: str, driver: str, *, resync_quiet_s: float = 30,
                 timezone: str = "UTC") -> AgentConfig:
    """The config ``Depot.add_device`` gives a tablet (same db file, same broker)."""
    return AgentConfig.model_validate({
        "depot": "test-depot", "device": device, "driver": driver, "timezone": timezone,
        "db": str(depot.root / f"{device}.sqlite"),
        "broker": {"host": depot.host, "port": depot.port},
        "sync": {"resync_quiet_s": resync_quiet_s, "backoff_min_s": 0.1, "backoff_max_s": 1.0},
    })


def write_agent_config(depot: Depot, device: str, driver: str) -> Path:
    """The tablet's TOML file, for an agent run in its own process."""
    path = depot.root / f"{device}.toml"
    path.write_text(
        f'depot = "test-depot"\ndevice = "{device}"\ndriver = "{driver}"\n'
        f'db = "{device}.sqlite"\n\n[broker]\nhost = "{depot.host}"\nport = {depot.port}\n\n'
        "[sync]\nresync_quiet_s = 30\nbackoff_min_s = 0.1\nbackoff_max_s = 1.0\n",
        encoding="utf-8",
    )
    return path


def reopen(depot: Depot, device: str, driver: str, *, start: bool = True,
           resync_quiet_s: float = 30) -> Agent:
    """A new Agent on a device's existing SQLite file (after a stop, a crash or offline)."""
    agent = Agent(agent_config(depot, device, driver, resync_quiet_s=resync_quiet_s),
                  transport=depot.transport)
    depot.agents.append(agent)
    if start:
        agent.start()
    return agent


def pause_gateway(depot: Depot) -> None:
    """Stop the gateway service; its persistent MQTT session keeps what arrives meanwhile."""
    depot.service.stop()


def resume_gateway(depot: Depot) -> None:
    """Start a new gateway service on the same store and MQTT identity."""
    depot.service = depot.new_service()
    depot.start()


def gateway_views(depot: Depot, device: str) -> dict[str, str]:
    """What the gateway last sent the device, per order: order id → view JSON (in the form the
    tablet stores: the gateway keeps the wire's compact form, defaults left out)."""
    with depot.store() as store:
        return {order_id: OrderView.model_validate_json(body).model_dump_json()
                for order_id, body in DeviceStore(store).sent(device).items()}


def last_seq(depot: Depot, device: str) -> int:
    with depot.store() as store:
        return DeviceStore(store).bounds(device)[1]


def tablet_views(agent: Agent) -> dict[str, str]:
    """The tablet's route views, per order: order id → view JSON (no local overlay)."""
    return {stop.order_id: stop.view.model_dump_json() for stop in agent.route()}


def _normalized(views: dict[str, str]) -> dict[str, Any]:
    return {order_id: OrderView.model_validate_json(body).model_dump(mode="json")
            for order_id, body in views.items()}


def in_step(depot: Depot, agent: Agent, device: str) -> bool:
    """The tablet holds exactly the gateway's views for the device, up to its last seq."""
    if agent.sync_status().last_seq != last_seq(depot, device):
        return False
    return _normalized(tablet_views(agent)) == _normalized(gateway_views(depot, device))


def values(agent: Agent, *fields: str) -> dict[str, tuple[Any, ...]]:
    """Order id → the settled values of ``fields``: what a driver sees, without timestamps."""
    return {stop.order_id: tuple(stop.view.value(f) for f in fields) for stop in agent.route()}
