"""The secured depot the security tests probe: ``gateway sample`` (3 drivers DRV-001..003, 24
orders) ingested, run by ``GatewayRunner`` (managed Mosquitto with the generated passwords and
ACL), tablets registered with ``gateway devices add``; probes log in with a tablet's own
credential, as a stolen tablet or a curious driver's laptop would. (A plain module, as
tests/broker.py and tests/system/depot.py are; tests/security/conftest.py holds the fixtures.)"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from crossdock_cli import cli as main
from gateway.config import load_config
from gateway.runner import GatewayRunner
from gateway.setup import write_sample_config
from tests.broker import MqttProbe, free_port

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
