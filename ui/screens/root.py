"""``TabletRoot``, the whole app's widget (sync bar, the current screen, navigation), and
the sync bar's view. See the package's doc for how it reads the agent."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

from kivy.clock import Clock
from kivy.metrics import mm
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.screenmanager import NoTransition, ScreenManager

from agent.errors import AgentError
from agent.model import Change
from agent.service import Agent
from sync.envelope import SourceFreshness
from ui import theme
from ui import viewmodels as vm
from ui.screens.conflict import ConflictScreen
from ui.screens.form import FormScreen
from ui.screens.refused import RefusedScreen
from ui.screens.route import RouteScreen
from ui.screens.stop import StopScreen
from ui.widgets import Badge, Panel, Tap, Text, gap

REFRESH_S = 0.25
"""A change is on screen at most this long after the agent reports it (well within 1 s); all
changes reported meanwhile make one refresh."""


class SyncBarView(Panel):
    """Always on top: offline / syncing / up to date, last sync, waiting, sources, zone."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(orientation="vertical", size_hint_y=None, padding=(mm(2), mm(1)),
                         spacing=mm(0.5), **kwargs)
        self.bind(minimum_height=self.setter("height"))
        top = BoxLayout(size_hint_y=None, height=mm(7), spacing=mm(2))
        self.headline = Badge("", "ok")
        self.headline.font_size = mm(theme.TEXT_MM)
        self.headline.height = mm(7)
        self.detail = Text(grow=False, bold=True)
        top.add_widget(self.headline)
        top.add_widget(self.detail)
        self.sources = Text(size_mm=theme.SMALL_MM, colour=theme.INK_SOFT)
        self.add_widget(top)
        self.add_widget(self.sources)
        self.message = Text(size_mm=theme.SMALL_MM, colour=theme.FILL["danger"], bold=True)
        self.add_widget(self.message)
        self.say("")

    def say(self, text: str) -> None:
        """A one-line message under the bar (an action the agent turned down); "" hides it."""
        self.message.text = text
        self.message.opacity = 1 if text else 0
        if not text:
            self.message.height = 0

    def show(self, bar: vm.SyncBar) -> None:
        self.headline.text = bar.headline
        self.headline.meaning = bar.meaning
        self.detail.text = f"{bar.waiting} · {bar.last_sync}"
        self.sources.text = "   ".join((*bar.sources, bar.zone))


class TabletRoot(Panel):
    """The app: sync bar, screens, navigation; bound to one ``Agent``."""

    def __init__(self, agent: Agent, *, zone: tzinfo, driver_resolves: Sequence[str] = (),
                 clock: Callable[[], datetime] | None = None,
                 age_refresh_s: float = vm.AGE_REFRESH_S, **kwargs: Any) -> None:
        super().__init__(theme.PAGE, orientation="vertical", **kwargs)
        self.agent = agent
        self.zone = zone
        self.driver_resolves = tuple(driver_resolves)
        self.now = clock or (lambda: datetime.now(UTC))
        self.redraws = 0  # refreshes run: a test counts them for a burst
        self._sources: tuple[SourceFreshness, ...] = ()
        self.bar = SyncBarView()
        self.manager = ScreenManager(transition=NoTransition())
        self.route_screen = RouteScreen(self)
        self.stop_screen = StopScreen(self)
        self.conflict_screen = ConflictScreen(self)
        self.refused_screen = RefusedScreen(self)
        self.form_screen = FormScreen(self)
        for screen in (self.route_screen, self.stop_screen, self.conflict_screen,
                       self.refused_screen, self.form_screen):
            self.manager.add_widget(screen)
        # the gap above it keeps a target cut by a scrolling screen's edge 3 mm from these
        nav = BoxLayout(size_hint_y=None, height=mm(theme.SECONDARY_MM + theme.GAP_MM + 1),
                        spacing=gap(), padding=(mm(2), gap(), mm(2), mm(1)))
        self.nav_route = Tap("Route", on_release=lambda *_: self.show("route"))
        self.nav_conflicts = Tap("Conflicts", on_release=lambda *_: self.open_conflicts(None))
        self.nav_refused = Tap("Refused", on_release=lambda *_: self.show("refused"))
        for tap in (self.nav_route, self.nav_conflicts, self.nav_refused):
            nav.add_widget(tap)
        self.add_widget(self.bar)
        self.add_widget(self.manager)
        self.add_widget(nav)
        self._trigger = Clock.create_trigger(self._redraw, REFRESH_S)
        self._ages = Clock.schedule_interval(lambda _dt: self._redraw(), age_refresh_s)
        self._unsubscribe = agent.subscribe(self._changed)
        self.bind(size=lambda *_: self._trigger())
        self._redraw()

    # any thread ---------------------------------------------------------------------------

    def _changed(self, change: Change) -> None:
        """The agent's observer (its threads): hand the work to Kivy's thread, coalesced."""
        self._trigger()

    # Kivy's thread ------------------------------------------------------------------------

    def close(self) -> None:
        self._unsubscribe()
        self._ages.cancel()
        self._trigger.cancel()

    @property
    def portrait(self) -> bool:
        return self.height > self.width

    def _redraw(self, *_: Any) -> None:
        self.redraws += 1
        now = self.now()
        stops = self.agent.route()
        refused = self.agent.refused()
        status = self.agent.sync_status()
        # a gateway's last will says "offline" without the sources: keep their last word
        self._sources = status.sources or self._sources
        if not status.sources and self._sources:
            status = status.model_copy(update={"sources": self._sources})
        self.bar.show(vm.sync_bar(status, self.agent.pending(), now=now, zone=self.zone))
        n_conflicts = sum(len(s.conflicts) for s in stops)
        self.nav_conflicts.text = f"Conflicts ({n_conflicts})" if n_conflicts else "Conflicts"
        self.nav_refused.text = f"Refused ({len(refused)})" if refused else "Refused"
        self.nav_refused.background_color = theme.rgba(
            theme.FILL["danger"] if refused else theme.BUTTON_SECONDARY)
        current = self.manager.current
        if current == "route":
            self.route_screen.show(vm.route_screen(stops, refused, now=now, zone=self.zone))
        elif current == "stop":
            order_id = self.stop_screen.order_id
            stop = next((s for s in stops if s.order_id == order_id), None)
            if stop is None:
                self.stop_screen.show(None, self.portrait, vm.refused_lines(
                    [r for r in refused if r.order_id == order_id], now=now, zone=self.zone))
            else:
                self.stop_screen.show(vm.stop_screen(stop, refused, now=now, zone=self.zone),
                                      self.portrait)
        elif current == "conflict":
            self.conflict_screen.show(vm.conflict_screen(
                stops, now=now, zone=self.zone, sources=status.sources,
                driver_resolves=self.driver_resolves, order_id=self.conflict_screen.order_id))
        elif current == "refused":
            self.refused_screen.show(vm.refused_lines(refused, now=now, zone=self.zone))

    def refresh_now(self) -> None:
        self._trigger.cancel()
        self._redraw()

    def show(self, name: str) -> None:
        self.bar.say("")
        self.manager.current = name
        self.refresh_now()

    def open_stop(self, order_id: str) -> None:
        self.stop_screen.order_id = order_id
        self.show("stop")

    def open_conflicts(self, order_id: str | None) -> None:
        self.conflict_screen.order_id = order_id
        self.show("conflict")

    def open_form(self, action: str, order_id: str) -> None:
        self.form_screen.open(action, order_id)
        self.show("form")

    def say(self, message: str) -> None:
        self.bar.say(message)

    def act(self, action: str, order_id: str, **kwargs: Any) -> bool:
        try:
            self.agent.act(action, order_id, **kwargs)
        except AgentError as exc:  # e.g. the stop left the route meanwhile: say so, keep going
            self.say(str(exc))
            return False
        self.refresh_now()  # recorded locally: pending at once
        return True

    def dismiss(self, event_id: str) -> None:
        try:
            self.agent.dismiss(event_id)
        except AgentError as exc:
            self.say(str(exc))
            return
        self.refresh_now()

    def prefer(self, card: vm.ConflictCard, candidate: vm.CandidateCard) -> None:
        if self.act("note", card.order_id, note=vm.preference_note(card, candidate)):
            self.say(f"Told dispatch you prefer {candidate.source_text}'s value (pending).")

    def choose(self, card: vm.ConflictCard, candidate: vm.CandidateCard) -> None:
        self.act("resolve", card.order_id, field=card.field, choose=candidate.claim_id)
