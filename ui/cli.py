"""``crossdock tablet --config TAB.toml``: the agent and the Kivy app in one process.

A desktop window for trying the tablet (the Android build is packaging's). Kivy is set up
before it is imported: ``KIVY_NO_ARGS`` (it must not read crossdock's arguments), the window's
size for the orientation asked for, and Kivy's logging left to Python's. Like ``agent run`` it
holds the tablet store's lock (``sync.host.lock.StoreLock``) while it runs: a second tablet or agent
on the same store says who holds it and exits 1, before any window opens.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from agent.config import load_config
from sync.host.lock import StoreLock

SIZES = {"landscape": (1280, 800), "portrait": (800, 1280)}


def prepare_kivy(width: int, height: int) -> None:
    """Kivy's environment and window size; call before anything imports Kivy."""
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")
    os.environ.setdefault("KIVY_NO_FILELOG", "1")
    os.environ.setdefault("KIVY_CLIPBOARD", "sdl2")
    from kivy.config import Config

    Config.set("graphics", "width", str(width))
    Config.set("graphics", "height", str(height))
    Config.set("input", "mouse", "mouse,disable_multitouch")  # a right click is not a touch
    Config.set("kivy", "exit_on_escape", "0")


@click.command("tablet")
@click.option("--config", "config_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="The agent's TOML file (written by `crossdock gateway devices add`).")
@click.option("--orientation", type=click.Choice(sorted(SIZES)), default="landscape",
              show_default=True, help="The window's shape: 1280x800 or 800x1280.")
def tablet(config_path: Path, orientation: str) -> None:
    """The driver's tablet: the agent and its screens in one process."""
    config = load_config(config_path)  # a bad file fails here, before a window opens
    # one agent per tablet store, as `agent run` holds it: a second one says who runs, exit 1
    with StoreLock(config.db, holder="crossdock tablet"):
        prepare_kivy(*SIZES[orientation])
        from ui.app import run_tablet

        run_tablet(config)
