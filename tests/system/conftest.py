"""The ``depot`` fixture: a whole depot on the ``network`` fixture (``tests/conftest.py``), so
each depot scenario runs twice: on the in-memory broker (in the fast suite, no Mosquitto
needed) and on a real Mosquitto (marked ``broker``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.depot import Depot
from tests.system.networks import Network


@pytest.fixture
def depot(tmp_path: Path, network: Network) -> Iterator[Depot]:
    d = Depot(tmp_path / "depot", network=network)
    d.start()
    try:
        yield d
    finally:
        d.stop()
