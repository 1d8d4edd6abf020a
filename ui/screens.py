"""The tablet's Kivy screens over the agent's API: route, stop, conflict, refused, forms.

``TabletRoot`` is the whole app's widget: the sync bar (always visible), the current screen,
and the navigation. It reads the agent only on Kivy's thread: the agent's observer (called on
the agent's threads) only fires a ``Clock.create_trigger``, so a burst of stream entries
becomes one refresh per trigger interval (``REFRESH_S``), not one per entry, and no widget is
ever touched off Kivy's thread. A timer rebuilds the screen every ``AGE_REFRESH_S`` so ages
keep moving. What each screen says comes from ``ui.viewmodels``; this module only lays it out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

from kivy.clock import Clock
from kivy.metrics import mm
from kivy.properties import ListProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.gridlayout import GridLayout
from kivy.uix.recycleboxlayout import RecycleBoxLayout
from kivy.uix.recycleview import RecycleView
from kivy.uix.recycleview.views import RecycleDataViewBehavior
from kivy.uix.screenmanager import NoTransition, Screen, ScreenManager
from kivy.uix.scrollview import ScrollView
from kivy.uix.textinput import TextInput
from kivy.uix.widget import Widget

from agent.errors import AgentError
from agent.model import Change
from agent.service import Agent
from sync.envelope import SourceFreshness
from ui import theme
from ui import viewmodels as vm
from ui.widgets import Badge, Panel, Tap, Text, gap

REFRESH_S = 0.25
"""A change is on screen at most this long after the agent reports it (well within 1 s); all
changes reported meanwhile make one refresh."""

ROW_MM = 19.0
"""A route row's height: a primary target (>= 15 mm), three lines of text and badges."""


def _scroll(content: BoxLayout) -> ScrollView:
    content.size_hint_y = None
    content.bind(minimum_height=content.setter("height"))
    view = ScrollView(do_scroll_x=False, bar_width=mm(2), scroll_type=["bars", "content"])
    view.add_widget(content)
    return view


def _column(**kwargs: Any) -> BoxLayout:
    kwargs.setdefault("spacing", gap())
    return BoxLayout(orientation="vertical", **kwargs)


# -- the route ---------------------------------------------------------------------------------


class StopRowView(RecycleDataViewBehavior, ButtonBehavior, Panel):
    """One stop in the route list: the whole row is one primary target."""

    order_id = StringProperty("")
    number = StringProperty("")
    title = StringProperty("")
    subtitle = StringProperty("")
    status = StringProperty("")
    status_meaning = StringProperty("info")
    when = StringProperty("")
    badges = ListProperty([])
    opener: Callable[[str], None] | None = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(orientation="horizontal", padding=(mm(2), mm(1)), spacing=mm(2),
                         **kwargs)
        self.target = "primary"
        self._number = Text(size_mm=theme.TITLE_MM, bold=True, grow=False, size_hint_x=None,
                            width=mm(10), halign="center")
        body = _column(spacing=mm(0.5))
        top = BoxLayout(spacing=mm(2))
        self._title = Text(size_mm=theme.TEXT_MM, bold=True, grow=False, shorten=True,
                           shorten_from="right")
        self._status = Text(size_mm=theme.TEXT_MM, bold=True, grow=False, halign="right",
                            size_hint_x=0.8)
        top.add_widget(self._title)
        top.add_widget(self._status)
        middle = BoxLayout(spacing=mm(2))
        self._subtitle = Text(size_mm=theme.SMALL_MM, colour=theme.INK_SOFT, grow=False,
                              shorten=True, shorten_from="right")
        self._when = Text(size_mm=theme.SMALL_MM, colour=theme.INK_SOFT, grow=False,
                          halign="right", size_hint_x=0.8)
        middle.add_widget(self._subtitle)
        middle.add_widget(self._when)
        self._badges = BoxLayout(spacing=mm(1.5), size_hint_y=None, height=mm(6))
        for row in (top, middle):
            body.add_widget(row)
        body.add_widget(self._badges)
        self.add_widget(self._number)
        self.add_widget(body)

    def refresh_view_attrs(self, rv: Any, index: int, data: dict[str, Any]) -> Any:
        result = super().refresh_view_attrs(rv, index, data)
        self._number.text = self.number
        self._title.text = self.title
        self._status.text = self.status
        self._status.set_colour(theme.FILL.get(self.status_meaning, theme.INK))
        self._subtitle.text = self.subtitle
        self._when.text = self.when
        self._badges.clear_widgets()
        for text, meaning in self.badges:
            self._badges.add_widget(Badge(text, meaning))
        self._badges.add_widget(Widget())
        return result

    def on_release(self) -> None:
        if self.opener is not None:
            self.opener(self.order_id)


class RouteScreen(Screen):
    def __init__(self, root: TabletRoot, **kwargs: Any) -> None:
        super().__init__(name="route", **kwargs)
        self.tablet = root
        box = _column(padding=(mm(2), mm(2)))
        heading = BoxLayout(size_hint_y=None, height=mm(8), spacing=mm(3))
        self.header = Text(size_mm=theme.TITLE_MM, bold=True, grow=False, size_hint_x=None,
                           width=mm(50))
        self.summary = Text(size_mm=theme.TEXT_MM, colour=theme.INK_SOFT, grow=False)
        heading.add_widget(self.header)
        heading.add_widget(self.summary)
        self.list = RecycleView(bar_width=mm(2), scroll_type=["bars", "content"])
        layout = RecycleBoxLayout(orientation="vertical", default_size=(None, mm(ROW_MM)),
                                  default_size_hint=(1, None), size_hint_y=None,
                                  spacing=gap())
        layout.bind(minimum_height=layout.setter("height"))
        self.list.add_widget(layout)
        self.list.viewclass = StopRowView  # after the layout: it is handed to the layout
        box.add_widget(heading)
        box.add_widget(self.list)
        self.add_widget(box)

    def show(self, screen: vm.RouteScreen) -> None:
        self.header.text = screen.title
        self.summary.text = screen.summary
        opener = self.tablet.open_stop
        self.list.data = [
            {"order_id": r.order_id, "number": r.number, "title": r.title,
             "subtitle": r.subtitle, "status": r.status, "status_meaning": r.status_meaning,
             "when": "   ".join(t for t in (r.window, r.eta) if t),
             "badges": [(b.text, b.meaning) for b in r.badges], "opener": opener}
            for r in screen.rows
        ]


# -- one stop ----------------------------------------------------------------------------------


class StopScreen(Screen):
    def __init__(self, root: TabletRoot, **kwargs: Any) -> None:
        super().__init__(name="stop", **kwargs)
        self.tablet = root
        self.order_id: str | None = None
        self.body = BoxLayout(spacing=mm(4), padding=(mm(2), mm(2)))
        self.add_widget(self.body)
        self.shown: object = None

    def show(self, screen: vm.StopScreen | None, portrait: bool,
             refused: Sequence[vm.RefusedLine] = ()) -> None:
        """``screen`` None: the stop left the route (``refused``: its refused actions)."""
        # rebuilt only when what it says changed: a finger on a button survives a refresh
        if self.shown == (screen, portrait, tuple(refused)):
            return
        self.shown = (screen, portrait, tuple(refused))
        self.body.clear_widgets()
        self.body.orientation = "vertical" if portrait else "horizontal"
        if screen is None:
            gone = _column()
            gone.add_widget(Text(f"{self.order_id} is no longer on your route.",
                                 size_mm=theme.TITLE_MM, bold=True))
            for line in refused:
                gone.add_widget(_refused_card(line, self.tablet.dismiss))
            gone.add_widget(Tap("Back to route", size_hint_x=None, width=mm(45),
                                on_release=lambda *_: self.tablet.show("route")))
            self.body.add_widget(_scroll(gone))
            return
        info = _column()
        info.add_widget(Text(screen.title, size_mm=theme.TITLE_MM, bold=True))
        status = BoxLayout(size_hint_y=None, height=mm(7), spacing=mm(2))
        status.add_widget(Badge(screen.status, screen.status_meaning))
        status.add_widget(Text(screen.order_id, size_mm=theme.SMALL_MM, colour=theme.INK_SOFT,
                               grow=False))
        info.add_widget(status)
        if screen.hold:
            banner = Panel(theme.FILL["hold"], size_hint_y=None, height=mm(10),
                           padding=(mm(2), 0))
            banner.add_widget(Text(screen.hold, colour=theme.ON_FILL, bold=True, grow=False))
            info.add_widget(banner)
        for contested in screen.conflicts:
            info.add_widget(Text(contested, colour=theme.FILL["danger"], bold=True))
        if screen.conflicts:
            info.add_widget(Tap("See both sides", size_hint_x=None, width=mm(45),
                                on_release=lambda *_: self.tablet.open_conflicts(
                                    screen.order_id)))
        for warning in screen.warnings:
            info.add_widget(Text(f"Warning: {warning}", colour=theme.FILL["warn"], bold=True))
        for label, value in screen.details:
            info.add_widget(Text(f"[b]{label}:[/b] {value}", markup=True))
        for done in screen.history:
            info.add_widget(Text(done.text, colour=theme.FILL[done.meaning], bold=True))
        for turned_down in screen.refused:
            info.add_widget(_refused_card(turned_down, self.tablet.dismiss))
        back = Tap("Back to route", on_release=lambda *_: self.tablet.show("route"))
        taps = [Tap(b.label, target="primary" if b.primary else "secondary",
                    on_release=self._action(b.action, screen.order_id)) for b in screen.actions]
        if portrait:  # under the details: primaries side by side, then the secondaries
            actions = _column(size_hint_y=None)
            actions.bind(minimum_height=actions.setter("height"))
            for kind in ("primary", "secondary"):
                row = BoxLayout(spacing=gap(), size_hint_y=None,
                                height=mm(theme.PRIMARY_MM if kind == "primary"
                                          else theme.SECONDARY_MM))
                for tap in taps:
                    if tap.target == kind:
                        row.add_widget(tap)
                actions.add_widget(row)
            actions.add_widget(back)
        else:  # beside the details, one column
            actions = _column(size_hint_x=None, width=mm(62))
            for tap in (*taps, back):
                actions.add_widget(tap)
            actions.add_widget(Widget())
        self.body.add_widget(_scroll(info))
        self.body.add_widget(actions)

    def _action(self, action: str, order_id: str) -> Callable[..., None]:
        def tap(*_: Any) -> None:
            if action in ("fail", "note", "refuse"):
                self.tablet.open_form(action, order_id)
            else:
                self.tablet.act(action, order_id)

        return tap


def _refused_card(line: vm.RefusedLine, dismiss: Callable[[str], None]) -> Panel:
    card = Panel(orientation="vertical", size_hint_y=None, padding=(mm(2), mm(2)),
                 spacing=gap())
    card.bind(minimum_height=card.setter("height"))
    card.add_widget(Text(line.text, bold=True, colour=theme.FILL["danger"]))
    card.add_widget(Text(f"Reason: {line.reason}", bold=True))
    card.add_widget(Text(line.when, size_mm=theme.SMALL_MM, colour=theme.INK_SOFT))
    card.add_widget(Tap("Dismiss (I have seen this)", size_hint_x=None, width=mm(70),
                        on_release=lambda *_: dismiss(line.event_id)))
    return card


# -- conflicts ---------------------------------------------------------------------------------


class ConflictScreen(Screen):
    def __init__(self, root: TabletRoot, **kwargs: Any) -> None:
        super().__init__(name="conflict", **kwargs)
        self.tablet = root
        self.order_id: str | None = None
        self.body = _column(padding=(mm(2), mm(2)))
        self.add_widget(_scroll(self.body))
        self.shown: object = None

    def show(self, screen: vm.ConflictScreen) -> None:
        if self.shown == screen:
            return
        self.shown = screen
        self.body.clear_widgets()
        self.body.add_widget(Text(screen.title, size_mm=theme.TITLE_MM, bold=True))
        if screen.empty:
            self.body.add_widget(Text(screen.empty))
        for card in screen.cards:
            self.body.add_widget(self._card(card))
        self.body.add_widget(Tap("Back to route", size_hint_x=None, width=mm(45),
                                 on_release=lambda *_: self.tablet.show("route")))

    def _card(self, card: vm.ConflictCard) -> Panel:
        box = Panel(orientation="vertical", size_hint_y=None, padding=(mm(2), mm(2)),
                    spacing=gap())
        box.bind(minimum_height=box.setter("height"))
        box.add_widget(Text(card.title, size_mm=theme.TITLE_MM, bold=True))
        line = Panel(theme.FILL["hold" if card.escalated else "danger"], size_hint_y=None,
                     padding=(mm(2), mm(1)))
        deadline = Text(card.deadline, colour=theme.ON_FILL, bold=True)
        line.add_widget(deadline)
        deadline.bind(height=lambda _w, h: setattr(line, "height", h + mm(2)))
        box.add_widget(line)
        sides = BoxLayout(spacing=mm(3), size_hint_y=None)
        columns = [self._side(card, candidate) for candidate in card.candidates]

        def level(*_: Any) -> None:  # side by side at the same height: the tallest one's
            tallest = max(c.minimum_height for c in columns)
            sides.height = tallest
            for c in columns:
                c.height = tallest

        for column in columns:
            column.bind(minimum_height=level)
            sides.add_widget(column)
        level()
        box.add_widget(sides)
        for stale in card.stale:
            box.add_widget(Text(f"{stale.source_text} {stale.as_of} ({stale.age}) still says "
                                f"{stale.value} — {stale.stale}", colour=theme.INK_SOFT))
        box.add_widget(Text(card.safe_default, bold=True))
        box.add_widget(Tap("Send dispatch a note", size_hint_x=None, width=mm(60),
                           on_release=lambda *_: self.tablet.open_form("note", card.order_id)))
        return box

    def _side(self, card: vm.ConflictCard, candidate: vm.CandidateCard) -> BoxLayout:
        side = Panel(theme.PAGE, orientation="vertical", size_hint_y=None,
                     padding=(mm(2), mm(2)), spacing=mm(1))
        side.add_widget(Text(candidate.value, size_mm=theme.BIG_MM, bold=True))
        side.add_widget(Text(f"from {candidate.source_text}", bold=True))
        side.add_widget(Text(f"{candidate.as_of} · {candidate.age}"))
        if candidate.cadence:
            side.add_widget(Text(f"updates {candidate.cadence}", size_mm=theme.SMALL_MM,
                                 colour=theme.INK_SOFT))
        side.add_widget(Widget())  # the buttons of both sides line up at the bottom
        side.add_widget(Tap("I prefer this (tell dispatch)",
                            on_release=lambda *_: self.tablet.prefer(card, candidate)))
        if candidate.can_choose:
            side.add_widget(Tap("Choose this", target="primary",
                                on_release=lambda *_: self.tablet.choose(card, candidate)))
        return side


# -- refused actions ---------------------------------------------------------------------------


class RefusedScreen(Screen):
    def __init__(self, root: TabletRoot, **kwargs: Any) -> None:
        super().__init__(name="refused", **kwargs)
        self.tablet = root
        self.body = _column(padding=(mm(2), mm(2)))
        self.add_widget(_scroll(self.body))
        self.shown: object = None

    def show(self, lines: Sequence[vm.RefusedLine]) -> None:
        if self.shown == tuple(lines):
            return
        self.shown = tuple(lines)
        self.body.clear_widgets()
        self.body.add_widget(Text("Refused by the depot", size_mm=theme.TITLE_MM, bold=True))
        self.body.add_widget(Text(
            "These actions reached the depot but were not applied. They stay here until you "
            "dismiss them.", colour=theme.INK_SOFT))
        if not lines:
            self.body.add_widget(Text("Nothing refused."))
        for line in lines:
            self.body.add_widget(_refused_card(line, self.tablet.dismiss))
        self.body.add_widget(Tap("Back to route", size_hint_x=None, width=mm(45),
                                 on_release=lambda *_: self.tablet.show("route")))


# -- forms: failed (reason), refused by customer, note ---------------------------------------


class FormScreen(Screen):
    def __init__(self, root: TabletRoot, **kwargs: Any) -> None:
        super().__init__(name="form", **kwargs)
        self.tablet = root
        self.action = "note"
        self.order_id = ""
        self.reason: str | None = None
        self.body = _column(padding=(mm(2), mm(2)))
        self.add_widget(_scroll(self.body))
        self.note = TextInput(multiline=True, size_hint_y=None, height=mm(18),
                              font_size=mm(theme.TEXT_MM), hint_text="Free text (optional)")
        self.reasons: list[Tap] = []

    def open(self, action: str, order_id: str) -> None:
        self.action, self.order_id, self.reason = action, order_id, None
        self.note.text = ""
        titles = {"fail": "Failed: pick a reason", "refuse": "Refused by the customer",
                  "note": "Note to dispatch"}
        self.body.clear_widgets()
        self.body.add_widget(Text(f"{titles[action]} — {order_id}", size_mm=theme.TITLE_MM,
                                  bold=True))
        self.reasons = []
        if action == "fail":
            grid = GridLayout(cols=2, spacing=gap(), size_hint_y=None)
            grid.bind(minimum_height=grid.setter("height"))
            for reason in vm.FAIL_REASONS:
                tap = Tap(reason, on_release=self._pick(reason))
                self.reasons.append(tap)
                grid.add_widget(tap)
            self.body.add_widget(grid)
        if action == "note":
            self.body.add_widget(Text("A note is sent to dispatch as your word; it decides "
                                      "nothing on its own.", colour=theme.INK_SOFT))
        self.body.add_widget(self.note)
        row = BoxLayout(spacing=gap(), size_hint_y=None, height=mm(theme.PRIMARY_MM))
        self.send = Tap("Send", target="primary", on_release=lambda *_: self.submit())
        row.add_widget(self.send)
        row.add_widget(Tap("Cancel", target="primary", colour=theme.BUTTON_SECONDARY,
                           on_release=lambda *_: self.tablet.open_stop(order_id)))
        self.body.add_widget(row)

    def _pick(self, reason: str) -> Callable[..., None]:
        def pick(tap: Tap) -> None:
            self.reason = reason
            for other in self.reasons:
                other.background_color = theme.rgba(
                    theme.FILL["ok"] if other is tap else theme.BUTTON_SECONDARY)

        return pick

    def submit(self) -> None:
        note = self.note.text.strip() or None
        if self.action == "fail" and self.reason is None:
            self.tablet.say("Pick a reason first.")
            return
        if self.action == "note" and note is None:
            self.tablet.say("Write the note first.")
            return
        reason = self.reason if self.action == "fail" else None
        if self.tablet.act(self.action, self.order_id, reason=reason, note=note):
            self.tablet.open_stop(self.order_id)


# -- the sync bar and the whole app -----------------------------------------------------------


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
