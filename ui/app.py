"""``TabletApp``: the Kivy app around ``ui.screens.TabletRoot``, and ``run_tablet``, which runs
the agent and the app in one process (``crossdock tablet``).

Import this only after ``ui.cli.prepare_kivy`` (or the tests' fixture) set Kivy's environment:
importing Kivy's window opens one.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from kivy.app import App

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
    """Start the agent (offline is fine), run the app until its window closes, stop the agent."""
    agent = Agent(config)
    try:
        agent.start()
        TabletApp(agent).run()
    finally:
        agent.stop()
