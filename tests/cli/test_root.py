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


def test_debug_is_accepted_after_the_subcommand_and_shows_the_traceback(tmp_path):
    missing = tmp_path / "nowhere" / "gateway.toml"
    quiet = subprocess.run(
        [sys.executable, "-m", "crossdock_cli", "gateway", "sources", "--config", str(missing)],
        capture_output=True, text=True)
    loud = subprocess.run(
        [sys.executable, "-m", "crossdock_cli", "gateway", "sources", "--config", str(missing),
         "--debug"], capture_output=True, text=True)
    assert quiet.returncode == 1 and len(quiet.stderr.strip().splitlines()) == 1
    assert "no such option" not in loud.stderr
    assert "Traceback" in loud.stderr and str(missing) in loud.stderr


def test_a_reader_that_closes_the_pipe_early_gets_a_quiet_exit(tmp_path):
    made = subprocess.run([sys.executable, "-m", "crossdock_cli", "gateway", "sample", "--out",
                           str(tmp_path / "d"), "--orders", "3000"],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    # `crossdock gateway inspect ... | head -1`: far more lines than a pipe's buffer holds
    proc = subprocess.Popen(
        [sys.executable, "-m", "crossdock_cli", "gateway", "inspect",
         str(tmp_path / "d" / "export" / "orders.dbf"), "--rows", "100000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    proc.wait(timeout=60)
    assert err == ""
    assert proc.returncode == 1
