"""A depot as ``gateway sample`` makes it, run by ``GatewayRunner`` (managed Mosquitto with the
generated passwords and ACL), tablets registered with ``gateway devices add``; probes log in
with a tablet's own credential, as a stolen tablet or a curious driver's laptop would."""

from __future__ import annotations

import datetime as dt
import logging
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from crossdock_cli import cli as main
from gateway.config import load_config
from gateway.runner import GatewayRunner
from gateway.setup import write_sample_config
from tests.broker import MqttProbe, free_port
from tests.security.fuzzing import fast_dir
from tests.security.memdepot import FuzzGateway, FuzzTablet, Tracebacks

DEPOT = "sec"


@dataclass(frozen=True)
class Tablet:
    device: str
    driver: str
    username: str
    password: str
    config: Path


class SecureDepot:
    """``gateway sample`` (3 drivers DRV-001..003, 24 orders) ingested, in ``root``;
    ``add(device, driver)`` as the CLI does; ``start()`` runs the gateway."""

    def __init__(self, root: Path) -> None:
        self.root = root
        write_sample_config(root, drivers=3, orders=24, seed=1, depot=DEPOT, port=free_port(),
                            now=dt.datetime.now(dt.UTC))
        self.config = root / "gateway.toml"
        self.cfg = load_config(self.config)
        self.cli("gateway", "ingest", "--config", str(self.config))
        self.runner: GatewayRunner | None = None

    def cli(self, *args: str) -> str:
        result = CliRunner().invoke(main, [*args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    def add(self, device: str, driver: str) -> Tablet:
        out = self.root / f"{device}.toml"
        self.cli("gateway", "devices", "add", device, "--driver", driver,
                 "--agent-config", str(out), "--config", str(self.config))
        return self.tablet(device, driver)

    def tablet(self, device: str, driver: str) -> Tablet:
        out = self.root / f"{device}.toml"
        broker = tomllib.loads(out.read_text(encoding="utf-8"))["broker"]
        return Tablet(device, driver, broker["username"], broker["password"], out)

    def start(self, **options: float) -> GatewayRunner:
        self.runner = GatewayRunner(self.cfg, scheduler=False, status_interval_s=0.5,
                                    **options)  # type: ignore[arg-type]
        self.runner.start()
        assert self.runner.service is not None and self.runner.service.link.wait_connected(10)
        return self.runner

    @property
    def broker(self):  # type: ignore[no-untyped-def]
        assert self.runner is not None and self.runner.broker is not None
        return self.runner.broker

    def login(self, tablet: Tablet, client_id: str | None = None, **kw: object) -> MqttProbe:
        return MqttProbe.connect(self.broker, client_id or tablet.username,
                                 username=tablet.username, password=tablet.password,
                                 **kw)  # type: ignore[arg-type]

    def gateway_login(self, client_id: str = "probe-gw") -> MqttProbe:
        return MqttProbe.connect(self.broker, client_id, username=self.cfg.broker.username,
                                 password=self.cfg.broker.password)

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.stop()


@pytest.fixture
def secure_depot(tmp_path: Path) -> Iterator[SecureDepot]:
    depot = SecureDepot(tmp_path / "depot")
    try:
        yield depot
    finally:
        depot.stop()


# --- the in-memory depot of the fuzz tests (tests.security.memdepot), one per module -------


@pytest.fixture(scope="module")
def tracebacks() -> Iterator[Tracebacks]:
    handler = Tracebacks()
    logging.getLogger().addHandler(handler)
    try:
        yield handler
    finally:
        logging.getLogger().removeHandler(handler)


@pytest.fixture(scope="module")
def gateway(tracebacks: Tracebacks) -> Iterator[FuzzGateway]:
    with fast_dir("fuzz-gw") as root:
        gw = FuzzGateway(root)
        try:
            yield gw
        finally:
            gw.service.stop()
            gw.net.close()


@pytest.fixture(scope="module")
def tablet(gateway: FuzzGateway) -> Iterator[FuzzTablet]:
    with fast_dir("fuzz-agent") as root:
        made = FuzzTablet(root, gateway.view)
        try:
            yield made
        finally:
            made.agent.stop()
            made.net.close()
