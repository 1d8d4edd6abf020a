"""Refused actions: each with the gateway's reason, kept on screen until the driver
dismisses it (``refused_card`` is also the stop screen's)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from kivy.metrics import mm
from kivy.uix.screenmanager import Screen

from ui import theme
from ui import viewmodels as vm
from ui.screens.nav import Tablet
from ui.widgets import Panel, Tap, Text, column, gap, scrolling


def refused_card(line: vm.RefusedLine, dismiss: Callable[[str], None]) -> Panel:
    card = Panel(orientation="vertical", size_hint_y=None, padding=(mm(2), mm(2)),
                 spacing=gap())
    card.bind(minimum_height=card.setter("height"))
    card.add_widget(Text(line.text, bold=True, colour=theme.FILL["danger"]))
    card.add_widget(Text(f"Reason: {line.reason}", bold=True))
    card.add_widget(Text(line.when, size_mm=theme.SMALL_MM, colour=theme.INK_SOFT))
    card.add_widget(Tap("Dismiss (I have seen this)", size_hint_x=None, width=mm(70),
                        on_release=lambda *_: dismiss(line.event_id)))
    return card


class RefusedScreen(Screen):
    def __init__(self, root: Tablet, **kwargs: Any) -> None:
        super().__init__(name="refused", **kwargs)
        self.tablet = root
        self.body = column(padding=(mm(2), mm(2)))
        self.add_widget(scrolling(self.body))
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
            self.body.add_widget(refused_card(line, self.tablet.dismiss))
        self.body.add_widget(Tap("Back to route", size_hint_x=None, width=mm(45),
                                 on_release=lambda *_: self.tablet.show("route")))
