"""The managed Mosquitto: config, lifecycle, persistence, ACL, and the queue we must not trust.

Real Mosquitto on loopback ports and real paho MQTT v5 clients; no mocks.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from gateway.broker.conf import BrokerSettings, BrokerUser, write_config
from gateway.broker.process import ManagedBroker
from gateway.errors import ConfigError, GatewayError
from sync.topics import Topics
from tests.broker import DEPOT, BrokerFactory, MqttProbe, connect_reason, free_port

pytestmark = pytest.mark.broker

TOPICS = Topics(DEPOT)
GATEWAY = BrokerUser(username="gateway", password="gw-secret", role="gateway")
TABLET_A = BrokerUser(username="tablet-a", password="a-secret", role="device", device="dev-a")
TABLET_B = BrokerUser(username="tablet-b", password="b-secret", role="device", device="dev-b")
DISPATCH = BrokerUser(username="desk", password="desk-secret", role="dispatch")
SESSION = 3600  # seconds a persistent test session outlives its connection


def _login(broker: ManagedBroker, user: BrokerUser, client_id: str) -> MqttProbe:
    return MqttProbe.connect(
        broker, client_id, username=user.username, password=user.password.get_secret_value()
    )


def test_qos1_publish_reaches_a_subscriber(mosquitto_session: ManagedBroker) -> None:
    assert mosquitto_session.url == f"mqtt://127.0.0.1:{mosquitto_session.port}"
    with (
        MqttProbe.connect(mosquitto_session, "qos1-sub") as sub,
        MqttProbe.connect(mosquitto_session, "qos1-pub") as pub,
    ):
        assert not sub.subscribe(TOPICS.inbox("dev-1")).is_failure
        pub.publish(TOPICS.inbox("dev-1"), b"seq 1")
        message = sub.get()
        assert message is not None
        assert (message.topic, message.payload, message.qos) == (
            TOPICS.inbox("dev-1"),
            b"seq 1",
            1,
        )


def test_queued_message_of_a_persistent_session_survives_a_restart(
    mosquitto: ManagedBroker,
) -> None:
    topic = TOPICS.inbox("dev-1")
    with MqttProbe.connect(
        mosquitto, "tablet-1", clean_start=False, session_expiry=SESSION
    ) as tablet:
        tablet.subscribe(topic)
    with MqttProbe.connect(mosquitto, "gateway") as gateway:
        gateway.publish(topic, b"queued while offline")

    mosquitto.restart()

    with MqttProbe.connect(
        mosquitto, "tablet-1", clean_start=False, session_expiry=SESSION
    ) as tablet:
        assert tablet.session_present
        message = tablet.get()
        assert message is not None
        assert message.payload == b"queued while offline"


def test_device_reads_and_writes_only_its_own_topics(make_broker: BrokerFactory) -> None:
    broker = make_broker(users=[GATEWAY, TABLET_A, TABLET_B])
    with _login(broker, GATEWAY, "gateway") as gateway, _login(broker, TABLET_A, "a") as tablet:
        gateway.subscribe(TOPICS.all_outboxes)
        tablet.subscribe(TOPICS.inbox("dev-b"))  # granted by Mosquitto, but never delivered
        tablet.subscribe(TOPICS.inbox("dev-a"))

        # Published in this order on one connection, so B's would arrive first if at all.
        gateway.publish(TOPICS.inbox("dev-b"), b"for B")
        gateway.publish(TOPICS.inbox("dev-a"), b"for A")
        received = tablet.get()
        assert received is not None
        assert (received.topic, received.payload) == (TOPICS.inbox("dev-a"), b"for A")

        # A forged publish is acknowledged and silently dropped by the broker.
        tablet.publish(TOPICS.outbox("dev-b"), b"forged as B")
        tablet.publish(TOPICS.outbox("dev-a"), b"from A")
        event = gateway.get()
        assert event is not None
        assert (event.topic, event.payload) == (TOPICS.outbox("dev-a"), b"from A")

        assert gateway.get(timeout=0.2) is None
        assert tablet.get(timeout=0.0) is None


def test_dispatch_sends_commands_and_reads_only_replies_and_status(
    make_broker: BrokerFactory,
) -> None:
    broker = make_broker(users=[GATEWAY, DISPATCH])
    with _login(broker, GATEWAY, "gateway") as gateway, _login(broker, DISPATCH, "desk") as desk:
        gateway.subscribe(f"{TOPICS.root}/#")
        desk.subscribe(f"{TOPICS.root}/#")
        desk.publish(TOPICS.outbox("dev-a"), b"not a tablet")
        desk.publish(TOPICS.commands, b"assign")
        command = gateway.get()
        assert command is not None
        assert (command.topic, command.payload) == (TOPICS.commands, b"assign")

        gateway.publish(TOPICS.inbox("dev-a"), b"not for dispatch")
        gateway.publish(TOPICS.replies("desk"), b"done")
        reply = desk.get()
        assert reply is not None
        assert (reply.topic, reply.payload) == (TOPICS.replies("desk"), b"done")


def test_wrong_password_and_anonymous_clients_are_refused(make_broker: BrokerFactory) -> None:
    broker = make_broker(users=[GATEWAY, TABLET_A])
    assert connect_reason(broker, "a", username="tablet-a", password="wrong").is_failure
    assert connect_reason(broker, "anon").is_failure
    assert not connect_reason(broker, "a", username="tablet-a", password="a-secret").is_failure


def test_tiny_queue_drops_messages_for_an_offline_client(make_broker: BrokerFactory) -> None:
    """Why correctness cannot rest on the broker's queue: past the limit, messages vanish."""
    broker = make_broker(max_queued_messages=5, max_inflight_messages=2)
    topic = TOPICS.inbox("dev-1")
    with MqttProbe.connect(broker, "tablet-1", clean_start=False, session_expiry=SESSION) as tab:
        tab.subscribe(topic)
    with MqttProbe.connect(broker, "gateway") as gateway:
        for seq in range(50):
            gateway.publish(topic, str(seq).encode())  # every one acknowledged by the broker

    with MqttProbe.connect(broker, "tablet-1", clean_start=False, session_expiry=SESSION) as tab:
        received = [int(message.payload) for message in tab.drain()]
    assert 1 <= len(received) <= 5 + 2
    assert received == sorted(received)


def test_start_on_a_port_in_use_fails_with_one_line(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        settings = BrokerSettings(data_dir=tmp_path, port=port, allow_anonymous=True, acl=False)
        broker = ManagedBroker(settings, [], DEPOT)
        try:
            with pytest.raises(GatewayError) as failure:
                broker.start(timeout=5)
            assert not broker.alive
        finally:
            broker.stop()
    message = str(failure.value)
    assert "\n" not in message
    assert f"127.0.0.1:{port}" in message
    assert "Address already in use" in message


def test_supervise_restarts_a_killed_broker(mosquitto: ManagedBroker) -> None:
    assert not mosquitto.supervise()
    mosquitto.kill()
    assert not mosquitto.alive

    assert mosquitto.supervise()

    assert mosquitto.alive
    assert mosquitto.restarts == 1
    assert not mosquitto.supervise()
    with MqttProbe.connect(mosquitto, "after-restart"):
        pass


def test_stopped_broker_is_not_restarted_by_supervise(mosquitto: ManagedBroker) -> None:
    mosquitto.stop()
    assert not mosquitto.supervise()
    assert not mosquitto.alive


def test_generated_files_hold_hashes_and_the_acl_not_plain_passwords(tmp_path: Path) -> None:
    settings = BrokerSettings(data_dir=tmp_path / "broker", port=free_port())
    conf = write_config(settings, [GATEWAY, TABLET_A, DISPATCH], DEPOT)

    text = conf.read_text()
    assert "allow_anonymous false" in text
    assert "max_queued_messages 100000" in text
    assert f"log_dest file {settings.log_file}" in text
    written = "".join(path.read_text() for path in settings.data_dir.iterdir())
    for user in (GATEWAY, TABLET_A, DISPATCH):
        assert user.password.get_secret_value() not in written
    assert settings.password_file.stat().st_mode & 0o077 == 0
    acl = settings.acl_file.read_text()
    assert f"topic read {TOPICS.inbox('dev-a')}" in acl
    assert f"topic write {TOPICS.outbox('dev-a')}" in acl
    assert f"topic write {TOPICS.commands}" in acl
    assert "dev-b" not in acl


def test_settings_and_identities_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="device id"):
        BrokerUser(username="t", password="p", role="device")
    with pytest.raises(ValueError, match="must not contain"):
        BrokerUser(username="t", password="a:b", role="gateway")
    with pytest.raises(ValueError, match="duration"):
        BrokerSettings(data_dir=tmp_path, persistent_client_expiration="forever")
    with pytest.raises(ConfigError, match="nobody could connect"):
        write_config(BrokerSettings(data_dir=tmp_path), [], DEPOT)
    with pytest.raises(ConfigError, match="repeated: gateway"):
        write_config(BrokerSettings(data_dir=tmp_path), [GATEWAY, GATEWAY], DEPOT)


def _mosquitto_by_hand(conf: Path) -> subprocess.Popen[bytes]:
    """A broker as a crashed gateway leaves it: running, nobody watching it."""
    from gateway.broker.binaries import find_mosquitto

    return subprocess.Popen([str(find_mosquitto()), "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_stale_broker_of_the_same_store_is_stopped_at_the_next_start(tmp_path: Path) -> None:
    settings = BrokerSettings(data_dir=tmp_path / "broker", port=free_port(),
                              allow_anonymous=True, acl=False)
    stale = _mosquitto_by_hand(write_config(settings, [], DEPOT))
    try:
        settings.pid_file.write_text(f"{stale.pid}\n")
        deadline = time.monotonic() + 10
        while not _listening(settings.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _listening(settings.port)  # it holds the port, as after a SIGKILLed gateway
        broker = ManagedBroker(settings, [], DEPOT)
        broker.start(timeout=10)  # without the pid file: "Address already in use"
        try:
            assert stale.wait(timeout=10) is not None
            assert broker.alive and settings.pid_file.read_text().strip() == str(broker.pid)
        finally:
            broker.stop()
        assert not settings.pid_file.exists()
    finally:
        stale.kill()
        stale.wait()


def test_a_pid_file_naming_another_depots_broker_leaves_it_running(tmp_path: Path) -> None:
    other = BrokerSettings(data_dir=tmp_path / "other", port=free_port(),
                           allow_anonymous=True, acl=False)
    theirs = _mosquitto_by_hand(write_config(other, [], DEPOT))
    try:
        ours = BrokerSettings(data_dir=tmp_path / "ours", port=free_port(),
                              allow_anonymous=True, acl=False)
        ours.data_dir.mkdir()
        ours.pid_file.write_text(f"{theirs.pid}\n")  # e.g. a pid reused, a copied folder
        with ManagedBroker(ours, [], DEPOT) as broker:
            assert broker.alive
            assert theirs.poll() is None  # not ours to stop
    finally:
        theirs.kill()
        theirs.wait()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
