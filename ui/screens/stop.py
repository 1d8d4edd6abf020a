"""One stop: address, customer, window, notes, warnings, what the driver did (pending, then
sent), refused actions with their reasons, and the actions (arrived, delivered, failed...)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from kivy.metrics import mm
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.screenmanager import Screen
from kivy.uix.widget import Widget

from ui import theme
from ui import viewmodels as vm
from ui.screens.nav import Tablet
from ui.screens.refused import refused_card
from ui.widgets import Badge, Panel, Tap, Text, column, gap, scrolling


class StopScreen(Screen):
    def __init__(self, root: Tablet, **kwargs: Any) -> None:
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
            gone = column()
            gone.add_widget(Text(f"{self.order_id} is no longer on your route.",
                                 size_mm=theme.TITLE_MM, bold=True))
            for line in refused:
                gone.add_widget(refused_card(line, self.tablet.dismiss))
            gone.add_widget(Tap("Back to route", size_hint_x=None, width=mm(45),
                                on_release=lambda *_: self.tablet.show("route")))
            self.body.add_widget(scrolling(gone))
            return
        info = column()
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
            info.add_widget(refused_card(turned_down, self.tablet.dismiss))
        back = Tap("Back to route", on_release=lambda *_: self.tablet.show("route"))
        taps = [Tap(b.label, target="primary" if b.primary else "secondary",
                    on_release=self._action(b.action, screen.order_id)) for b in screen.actions]
        if portrait:  # under the details: primaries side by side, then the secondaries
            actions = column(size_hint_y=None)
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
            actions = column(size_hint_x=None, width=mm(62))
            for tap in (*taps, back):
                actions.add_widget(tap)
            actions.add_widget(Widget())
        self.body.add_widget(scrolling(info))
        self.body.add_widget(actions)

    def _action(self, action: str, order_id: str) -> Callable[..., None]:
        def tap(*_: Any) -> None:
            if action in ("fail", "note", "refuse"):
                self.tablet.open_form(action, order_id)
            else:
                self.tablet.act(action, order_id)

        return tap
