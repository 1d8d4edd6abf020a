"""The ``crossdock gateway`` command group (DESIGN §8), one module per command group.

Thin, as sqlite-utils' cli.py: parse, call the library, print a summary or ``--json``. Errors
are crossdock errors; the root command (``crossdock_cli``) turns them into one line on stderr
and exit 1.

Modules:
    common   -- options, opening the depot, JSON output, ages, the audit name
    prepare  -- init, sample, inspect, tls-cert
    ingest   -- ingest (progress bars, exit 3 held / 4 degraded), writeback
    listings -- sources, quarantine, conflicts, refused
    devices  -- devices add|revoke|rotate|bind|list
    run      -- run (and run --shadow)
``users``, ``proposals`` and ``report`` are the board's (``gateway.board.cli``), added here.

Exports ``gateway``, the click group.
"""

from __future__ import annotations

import click

from gateway.board.cli import proposals, report, users
from gateway.cli.devices import devices
from gateway.cli.ingest import ingest, writeback
from gateway.cli.listings import conflicts, quarantine, refused, sources
from gateway.cli.prepare import init, inspect, sample, tls_cert
from gateway.cli.run import run

__all__ = ["gateway"]


@click.group()
def gateway() -> None:
    """The depot gateway: legacy sources, quarantine, conflicts, devices, MQTT."""


for _command in (init, sample, inspect, tls_cert, ingest, writeback, sources, quarantine,
                 conflicts, refused, devices, run, users, proposals, report):
    gateway.add_command(_command)
