"""The route screen: today's stops in order in a recycling list (150 stops, a few row
widgets), each row one primary target with its status, window, ETA and badges."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kivy.metrics import mm
from kivy.properties import ListProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.recycleboxlayout import RecycleBoxLayout
from kivy.uix.recycleview import RecycleView
from kivy.uix.recycleview.views import RecycleDataViewBehavior
from kivy.uix.screenmanager import Screen
from kivy.uix.widget import Widget

from ui import theme
from ui import viewmodels as vm
from ui.screens.nav import Tablet
from ui.widgets import Badge, Panel, Text, column, gap

ROW_MM = 19.0
"""A route row's height: a primary target (>= 15 mm), three lines of text and badges."""


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
        body = column(spacing=mm(0.5))
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
    def __init__(self, root: Tablet, **kwargs: Any) -> None:
        super().__init__(name="route", **kwargs)
        self.tablet = root
        box = column(padding=(mm(2), mm(2)))
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
