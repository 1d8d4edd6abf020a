"""The forms: failed (a reason from the list and free text), refused by customer, note."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kivy.metrics import mm
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.gridlayout import GridLayout
from kivy.uix.screenmanager import Screen
from kivy.uix.textinput import TextInput

from ui import theme
from ui import viewmodels as vm
from ui.screens.nav import Tablet
from ui.widgets import Tap, Text, column, gap, scrolling


class FormScreen(Screen):
    def __init__(self, root: Tablet, **kwargs: Any) -> None:
        super().__init__(name="form", **kwargs)
        self.tablet = root
        self.action = "note"
        self.order_id = ""
        self.reason: str | None = None
        self.body = column(padding=(mm(2), mm(2)))
        self.add_widget(scrolling(self.body))
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
