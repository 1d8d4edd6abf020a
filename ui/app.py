"""``TabletApp``: the Kivy app around ``ui.screens.TabletRoot``, and ``run_tablet``, which runs
the agent and the app in one process (``crossdock tablet``).

Import this only after ``ui.cli.prepare_kivy`` (or the tests' fixture) set Kivy's environment:
importing Kivy's window opens one.
"""

from __future__ import annotations

import signal
from types import FrameType
from zoneinfo import ZoneInfo

from kivy.app import App
from kivy.clock import Clock

from agent.config import AgentConfig
from agent.service import Agent
from ui.screens import TabletRoot


class TabletApp(App):
    """One driver's tablet: the agent's route, conflicts and sync state on screen."""

    title = "crossdock"

    def __init__(self, agent: Agent, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.agent = agent
        self.tablet: TabletRoot | None = None

    def build(self) -> TabletRoot:
        config = self.agent.config
        self.title = f"crossdock — {config.device} (driver {config.driver})"
        self.tablet = TabletRoot(self.agent, zone=ZoneInfo(config.timezone),
                                 driver_resolves=config.driver_resolves)
        return self.tablet

    def on_stop(self) -> None:
        if self.tablet is not None:
            self.tablet.close()


def run_tablet(config: AgentConfig) -> None:
    """Start the agent (offline is fine), run the app until its window closes (or SIGINT /
    SIGTERM, which close it on Kivy's thread), then stop the agent: it says "offline"."""
    agent = Agent(config)
    app = TabletApp(agent)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        Clock.schedule_once(lambda _dt: app.stop())

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        agent.start()
        app.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        agent.stop()
