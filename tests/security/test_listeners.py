"""A plain (unencrypted) listener bound beyond loopback is refused unless the config says
``allow_plain_beyond_loopback = true``, with one line saying why; loopback and TLS are fine."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from crossdock_cli import cli
from gateway.broker.conf import BrokerSettings
from gateway.config import load_config
from gateway.errors import ConfigError
from tests.broker import MqttProbe, start_broker
from tests.security.depot import SecureDepot


def _with_host(depot: SecureDepot, host: str, *, allow: bool = False) -> Path:
    text = depot.config.read_text(encoding="utf-8").replace(
        'host = "127.0.0.1"', f'host = "{host}"' + (
            "\nallow_plain_beyond_loopback = true" if allow else ""), 1)
    depot.config.write_text(text, encoding="utf-8")
    return depot.config


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "depot-gw", "::"])
def test_a_plain_listener_beyond_loopback_is_refused_in_one_line(
        secure_depot: SecureDepot, host: str) -> None:
    config = _with_host(secure_depot, host)
    with pytest.raises(ConfigError, match="allow_plain_beyond_loopback = true"):
        load_config(config)
    result = CliRunner().invoke(cli, ["gateway", "run", "--config", str(config)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and f"plain MQTT listener on {host}" in lines[0], result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_a_plain_listener_on_loopback_is_fine(secure_depot: SecureDepot, host: str) -> None:
    assert load_config(_with_host(secure_depot, host)).broker.host == host


@pytest.mark.broker
def test_allow_plain_beyond_loopback_lets_it_bind_and_serve(tmp_path: Path,
                                                             secure_depot: SecureDepot) -> None:
    assert load_config(_with_host(secure_depot, "0.0.0.0", allow=True)).broker.host == "0.0.0.0"
    with pytest.raises(ValidationError, match="allow_plain_beyond_loopback"):
        BrokerSettings(data_dir=tmp_path, host="0.0.0.0")
    broker = start_broker(tmp_path / "b", host="0.0.0.0", allow_plain_beyond_loopback=True)
    try:
        with MqttProbe.connect(broker, "c", host="127.0.0.1") as probe:  # control: it serves
            assert probe.connected.is_set()
    finally:
        broker.stop()
