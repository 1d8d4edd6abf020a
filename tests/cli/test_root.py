"""The crossdock command's contract: groups, --version, and honest 'not built yet'."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from crossdock_cli import cli


def test_help_lists_every_group():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for group in ("gateway", "agent", "dispatch", "tablet", "demo"):
        assert group in result.output


def test_a_part_not_built_says_so_with_exit_2():
    # every part is built now (the tablet came last): the stand-in a missing part gets
    from crossdock_cli import _not_built

    result = CliRunner().invoke(_not_built("tablet", "the Kivy tablet UI is not built yet"),
                                ["--config", "x.toml"])
    assert result.exit_code == 2
    assert "not built yet" in result.output
    assert "not built" not in (cli.commands["tablet"].help or "")


def test_console_script_runs_as_a_process():
    proc = subprocess.run(
        [sys.executable, "-m", "crossdock_cli", "--version"], capture_output=True, text=True
    )
    assert proc.returncode == 0
    assert "crossdock" in proc.stdout
