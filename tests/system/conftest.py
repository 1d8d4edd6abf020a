"""The ``network`` fixture runs each depot scenario twice: on the in-memory broker (in the
fast suite, no Mosquitto needed) and on a real Mosquitto (marked ``broker``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker import start_broker
from tests.memnet import MemNetwork
from tests.system.depot import Depot
from tests.system.networks import MosquittoNetwork, Network

NETWORKS = ["memory", pytest.param("mosquitto", marks=pytest.mark.broker)]


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


@pytest.fixture
def depot(tmp_path: Path, network: Network) -> Iterator[Depot]:
    d = Depot(tmp_path / "depot", network=network)
    d.start()
    try:
        yield d
    finally:
        d.stop()
