"""Fixtures of the security tests (the helpers are plain modules, as in tests/conftest.py):

* ``secure_depot`` -- a ``tests.security.depot.SecureDepot`` in ``tmp_path``, stopped at
  teardown (a real Mosquitto with the generated config: tests using it carry ``broker``);
* ``tracebacks``, ``gateway``, ``tablet`` -- the fuzz tests' in-memory depot
  (``tests.security.memdepot``), one per module.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.depot import SecureDepot
from tests.security.fuzzing import fast_dir
from tests.security.memdepot import FuzzGateway, FuzzTablet, Tracebacks


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
            made.close()
