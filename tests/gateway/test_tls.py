"""The broker's TLS listener for the tablets (DESIGN.md §6): the certificate ``gateway tls-cert``
makes, the settings and rendered config, and a real Mosquitto serving TLS to a real agent.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

import gateway.broker.binaries
from agent.config import AgentConfig
from agent.service import Agent
from gateway.broker.conf import BrokerSettings, BrokerUser, write_config
from gateway.broker.process import ManagedBroker
from gateway.broker.tls import TlsFiles, make_self_signed, san_entry
from gateway.config import GatewayConfig, load_config
from gateway.errors import ConfigError, GatewayError
from gateway.setup import init_dir, write_agent_config
from sync.topics import Topics
from tests.broker import DEPOT, WAIT, BrokerFactory, MqttProbe, free_port

GATEWAY = BrokerUser(username="gateway", password="gw-secret", role="gateway")
TABLET = BrokerUser(username="tab-1", password="tab-secret", role="device", device="tab-1")


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_self_signed(tmp_path_factory.mktemp("tls"), ["127.0.0.1", "localhost"], days=2)


@pytest.fixture(scope="module")
def other_cert(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A certificate for the same hosts from another key: a CA the broker is not signed by."""
    return make_self_signed(tmp_path_factory.mktemp("other"), ["127.0.0.1", "localhost"], days=2)


@pytest.fixture
def tls_broker(make_broker: BrokerFactory, cert: TlsFiles) -> ManagedBroker:
    return make_broker(
        users=[GATEWAY, TABLET],
        tls_port=free_port(),
        tls_host="127.0.0.1",
        certfile=cert.certfile,
        keyfile=cert.keyfile,
    )


def _tls_port(broker: ManagedBroker) -> int:
    port = broker.settings.tls_port
    assert port is not None
    return port


# --- the certificate -----------------------------------------------------------------------


def test_tls_cert_names_every_host_and_keeps_the_key_private(cert: TlsFiles) -> None:
    assert cert.certfile.name == "broker-cert.pem" and cert.keyfile.name == "broker-key.pem"
    assert cert.keyfile.stat().st_mode & 0o777 == 0o600
    shown = subprocess.run(
        ["openssl", "x509", "-in", str(cert.certfile), "-noout", "-ext", "subjectAltName"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert "IP Address:127.0.0.1" in shown and "DNS:localhost" in shown


def test_tls_cert_does_not_replace_a_certificate_tablets_may_trust(cert: TlsFiles) -> None:
    before = cert.certfile.read_bytes()
    with pytest.raises(ConfigError, match="exists; tablets trusting it would be locked out"):
        make_self_signed(cert.certfile.parent, ["127.0.0.1"])
    assert cert.certfile.read_bytes() == before


def test_san_entry_tells_addresses_from_names_and_refuses_anything_else() -> None:
    assert san_entry("192.168.1.10") == "IP:192.168.1.10"
    assert san_entry("::1") == "IP:::1"
    assert san_entry("depot-gw.local") == "DNS:depot-gw.local"
    with pytest.raises(ConfigError, match="neither an IP address nor a host name"):
        san_entry("gw,IP:10.0.0.1")


def test_missing_openssl_is_one_line_saying_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(gateway.broker.binaries, "_BINARY_FOLDERS", ())
    with pytest.raises(GatewayError) as caught:
        make_self_signed(tmp_path, ["127.0.0.1"])
    assert str(caught.value) == "openssl is not installed: apt-get install openssl"


# --- settings and the rendered config --------------------------------------------------------


def test_tls_settings_are_all_or_none(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="missing: certfile, keyfile"):
        BrokerSettings(data_dir=tmp_path, tls_port=8883)
    with pytest.raises(ValueError, match="give TLS its own port"):
        BrokerSettings(data_dir=tmp_path, port=8883, tls_port=8883,
                       certfile=tmp_path / "c.pem", keyfile=tmp_path / "k.pem")


def test_tls_listener_is_rendered_only_when_configured(tmp_path: Path, cert: TlsFiles) -> None:
    plain = write_config(BrokerSettings(data_dir=tmp_path / "plain", port=1883), [GATEWAY], DEPOT)
    assert "\ncertfile " not in plain.read_text()
    assert "listener 1883 127.0.0.1\n" in plain.read_text()
    settings = BrokerSettings(data_dir=tmp_path / "tls", port=1883, tls_port=8883,
                              certfile=cert.certfile, keyfile=cert.keyfile)
    conf = write_config(settings, [GATEWAY], DEPOT).read_text()
    assert "listener 1883 127.0.0.1\n" in conf
    assert "per_listener_settings false" in conf
    block = conf[conf.index("listener 8883 0.0.0.0"):].splitlines()[:5]
    assert block == ["listener 8883 0.0.0.0", "protocol mqtt", f"certfile {cert.certfile}",
                     f"keyfile {cert.keyfile}", "tls_version tlsv1.2"]


def test_a_missing_key_file_is_a_config_error_naming_it(tmp_path: Path, cert: TlsFiles) -> None:
    missing = tmp_path / "nope-key.pem"
    settings = BrokerSettings(data_dir=tmp_path / "b", tls_port=8883, certfile=cert.certfile,
                              keyfile=missing)
    with pytest.raises(ConfigError) as caught:
        write_config(settings, [GATEWAY], DEPOT)
    assert str(caught.value) == f"broker keyfile {missing}: no such file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_certificate_is_a_config_error_naming_it(
    tmp_path: Path, cert: TlsFiles
) -> None:
    locked = tmp_path / "locked.pem"
    locked.write_bytes(cert.certfile.read_bytes())
    locked.chmod(0)
    settings = BrokerSettings(data_dir=tmp_path / "b", tls_port=8883, certfile=locked,
                              keyfile=cert.keyfile)
    with pytest.raises(ConfigError, match=re.escape(f"broker certfile {locked}: cannot read")):
        write_config(settings, [GATEWAY], DEPOT)


def test_agent_config_for_a_tls_broker_points_at_the_public_host_and_a_copy_of_the_ca(
    tmp_path: Path, cert: TlsFiles
) -> None:
    (tmp_path / "broker-cert.pem").write_bytes(cert.certfile.read_bytes())
    cfg = GatewayConfig.model_validate({
        "base_dir": str(tmp_path),
        "broker": {"port": 1883, "tls_port": 8883, "certfile": "broker-cert.pem",
                   "keyfile": "broker-key.pem", "public_host": "depot-gw.local"},
    })
    out = tmp_path / "tablets" / "tab-1.toml"
    written = write_agent_config(out, cfg, device="tab-1", driver="7", password="pw")
    assert written == [out, out.with_name("tab-1-ca.pem")]
    assert written[1].read_bytes() == cert.certfile.read_bytes()
    text = out.read_text()
    assert 'host = "depot-gw.local"\nport = 8883\n' in text
    assert 'tls = true\nca_file = "tab-1-ca.pem"\n' in text


def test_agent_config_for_a_tls_broker_needs_the_public_host(tmp_path: Path) -> None:
    cfg = GatewayConfig.model_validate({
        "base_dir": str(tmp_path),
        "broker": {"tls_port": 8883, "certfile": "c.pem", "keyfile": "k.pem"},
    })
    with pytest.raises(ConfigError, match=r"broker\.public_host is not set"):
        write_agent_config(tmp_path / "t.toml", cfg, device="t", driver="7", password="pw")


# --- a real broker -------------------------------------------------------------------------


@pytest.fixture
def agent_config(tmp_path: Path, tls_broker: ManagedBroker, cert: TlsFiles) -> AgentConfig:
    return AgentConfig.model_validate({
        "depot": DEPOT, "device": "tab-1", "driver": "7", "db": tmp_path / "tab-1.sqlite",
        "broker": {"host": "localhost", "port": _tls_port(tls_broker), "username": "tab-1",
                   "password": "tab-secret", "tls": True, "ca_file": cert.certfile},
    })


@pytest.mark.broker
def test_agent_comes_online_over_tls_with_the_same_identities_and_acl(
    tls_broker: ManagedBroker, agent_config: AgentConfig
) -> None:
    status = Topics(DEPOT).device_status("tab-1")
    # the gateway stays on the loopback plain listener; the tablet uses TLS
    with MqttProbe.connect(tls_broker, "gateway", username="gateway",
                           password="gw-secret") as gw:
        gw.subscribe(status)
        with Agent(agent_config) as agent:
            agent.start()
            assert agent.wait_online(WAIT * 2)
            message = gw.get()
            assert message is not None and message.topic == status
            assert b"true" in message.payload


@pytest.mark.broker
def test_plain_mqtt_on_the_tls_port_is_refused(tls_broker: ManagedBroker) -> None:
    with pytest.raises(AssertionError, match="no CONNACK"):
        MqttProbe("plain").start(tls_broker, username="tab-1", password="tab-secret",
                                 port=_tls_port(tls_broker))
    deadline = time.monotonic() + WAIT  # Mosquitto logs why it dropped the connection
    while "SSL routines" not in tls_broker.settings.log_file.read_text():
        assert time.monotonic() < deadline, tls_broker.settings.log_file.read_text()[-400:]
        time.sleep(0.02)


@pytest.mark.broker
def test_a_client_that_does_not_trust_the_certificate_cannot_connect(
    tls_broker: ManagedBroker, other_cert: TlsFiles
) -> None:
    # Python's ssl, not paho: paho 2.2 leaves the socket of a failed handshake unclosed.
    context = ssl.create_default_context(cafile=str(other_cert.certfile))
    with (
        socket.create_connection(("127.0.0.1", _tls_port(tls_broker)), timeout=WAIT) as raw,
        pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"),
    ):
        context.wrap_socket(raw, server_hostname="localhost")


@pytest.mark.broker
def test_tls_client_with_the_certificate_logs_in_and_bad_passwords_still_fail(
    tls_broker: ManagedBroker, cert: TlsFiles
) -> None:
    with MqttProbe.connect(tls_broker, "tls-ok", username="tab-1", password="tab-secret",
                           host="127.0.0.1", port=_tls_port(tls_broker), ca_file=cert.certfile):
        pass
    probe = MqttProbe("tls-bad-password")
    try:
        reason = probe.start(tls_broker, username="tab-1", password="wrong", host="127.0.0.1",
                             port=_tls_port(tls_broker), ca_file=cert.certfile)
    finally:
        probe.close()
    assert reason.is_failure



def test_gateway_init_writes_the_tls_keys_commented_out_ready_to_uncomment(
    tmp_path: Path,
) -> None:
    init_dir(tmp_path, depot="d1", port=1883, now=datetime(2025, 5, 1, tzinfo=UTC))
    config = tmp_path / "gateway.toml"
    text = config.read_text()
    assert "openssl req -x509" in text and "subjectAltName=" in text
    assert load_config(config).broker.tls_port is None
    keys = ("tls_port", "tls_host", "certfile", "keyfile", "public_host", "ca_file")
    config.write_text("".join(
        line[2:] if line.startswith(tuple(f"# {key} =" for key in keys)) else line
        for line in text.splitlines(keepends=True)
    ))
    broker = load_config(config).broker
    assert (broker.tls_port, broker.public_host, broker.tablet_ca_file) == (
        8883, "192.168.1.10", "broker-cert.pem")


def test_devices_add_refuses_before_registering_when_tls_lacks_a_public_host(
    tmp_path: Path, cert: TlsFiles
) -> None:
    from click.testing import CliRunner

    from crossdock_cli import cli
    from gateway.store.core import Store
    from gateway.store.devices import DeviceStore

    (tmp_path / "gateway.toml").write_text(
        'depot = "d"\ndb = "g.sqlite"\n[broker]\ntls_port = 8883\n'
        f'certfile = "{cert.certfile}"\nkeyfile = "{cert.keyfile}"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, [
        "gateway", "devices", "add", "tab-1", "--driver", "7", "--config",
        str(tmp_path / "gateway.toml"), "--agent-config", str(tmp_path / "tab-1.toml")])
    assert result.exit_code == 1
    assert "broker.public_host is not set" in result.output
    with Store(tmp_path / "g.sqlite") as store:
        assert DeviceStore(store).get("tab-1") is None
    assert not (tmp_path / "tab-1.toml").exists()


def test_devices_add_refuses_before_registering_when_the_certificate_cannot_be_read(
    tmp_path: Path, cert: TlsFiles
) -> None:
    from click.testing import CliRunner

    from crossdock_cli import cli
    from gateway.store.core import Store
    from gateway.store.devices import DeviceStore

    (tmp_path / "gateway.toml").write_text(
        'depot = "d"\ndb = "g.sqlite"\n[broker]\ntls_port = 8883\npublic_host = "localhost"\n'
        f'certfile = "{cert.certfile}"\nkeyfile = "{cert.keyfile}"\nca_file = "nope.pem"\n',
        encoding="utf-8")
    result = CliRunner().invoke(cli, [
        "gateway", "devices", "add", "tab-1", "--driver", "7", "--config",
        str(tmp_path / "gateway.toml"), "--agent-config", str(tmp_path / "tab-1.toml")])
    assert result.exit_code == 1
    assert f"broker ca_file {tmp_path / 'nope.pem'}: cannot read" in result.output
    with Store(tmp_path / "g.sqlite") as store:
        assert DeviceStore(store).get("tab-1") is None
    assert not (tmp_path / "tab-1.toml").exists()
