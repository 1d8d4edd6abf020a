"""The conflict screen: the candidates side by side, with value, source and age in words,
stale marks, the deadline, and the driver's note or preference (or choice, where policy lets)."""

from __future__ import annotations

from typing import Any

from kivy.metrics import mm
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.screenmanager import Screen
from kivy.uix.widget import Widget

from ui import theme
from ui import viewmodels as vm
from ui.screens.nav import Tablet
from ui.widgets import Panel, Tap, Text, column, gap, scrolling


class ConflictScreen(Screen):
    def __init__(self, root: Tablet, **kwargs: Any) -> None:
        super().__init__(name="conflict", **kwargs)
        self.tablet = root
        self.order_id: str | None = None
        self.body = column(padding=(mm(2), mm(2)))
        self.add_widget(scrolling(self.body))
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

        for each in columns:
            each.bind(minimum_height=level)
            sides.add_widget(each)
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
