from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.broker.process import ManagedBroker
from tests.system.depot import Depot


@pytest.fixture
def depot(tmp_path: Path, mosquitto: ManagedBroker) -> Iterator[Depot]:
    d = Depot(tmp_path / "depot", mosquitto.host, mosquitto.port)
    d.start()
    try:
        yield d
    finally:
        d.stop()
