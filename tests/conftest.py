"""Fixtures shared by the whole test suite. Helpers live in plain modules (tests/broker.py).

* ``mosquitto`` -- a real Mosquitto on a free loopback port, anonymous, no ACL; one per test.
* ``mosquitto_session`` -- the same, shared by the whole run: never stop, kill or restart it.
* ``make_broker(**overrides)`` -- more brokers with other settings or identities (see
  ``tests.broker.start_broker``), e.g. ``make_broker(max_queued_messages=5)`` or
  ``make_broker(users=[...])`` for passwords and the ACL.
* ``network`` -- the network a depot scenario runs on, twice: the in-memory broker
  (``tests.memnet``, in the fast suite) and a real Mosquitto (marked ``broker``); both offer
  ``tests.system.networks.Network`` (``tests/system`` and ``tests/ui`` build depots on it).

Every broker a fixture started is stopped at teardown, whatever the test's outcome. Tests using
them carry ``@pytest.mark.broker``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.broker.process import ManagedBroker
from tests.broker import BrokerFactory, start_broker
from tests.memnet import MemNetwork
from tests.system.networks import MosquittoNetwork, Network

NETWORKS = ["memory", pytest.param("mosquitto", marks=pytest.mark.broker)]


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[ManagedBroker]:
    broker = start_broker(tmp_path / "mosquitto")
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def mosquitto_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedBroker]:
    broker = start_broker(tmp_path_factory.mktemp("mosquitto-session"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[BrokerFactory]:
    factory = BrokerFactory(tmp_path / "brokers")
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(params=NETWORKS)
def network(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Network]:
    if request.param == "memory":
        net = MemNetwork()
        try:
            yield net
        finally:
            net.close()
        return
    broker = start_broker(tmp_path / "mosquitto")
    try:
        yield MosquittoNetwork(broker)
    finally:
        broker.stop()
