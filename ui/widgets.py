"""Small Kivy building blocks in the daylight theme, sized in real millimetres.

``Tap`` is every tappable target: a button with ``target`` ``"primary"`` or ``"secondary"``,
never smaller than ``ui.theme``'s sizes (``tests/ui`` measures every one on every screen).
No action needs a swipe or a long press: everything is one tap.
"""

from __future__ import annotations

from typing import Any, Literal

from kivy.graphics import Color, Rectangle
from kivy.metrics import mm
from kivy.properties import ListProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.label import Label
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

from ui import theme
from ui.viewmodels import Meaning

Target = Literal["primary", "secondary"]


def _filled(widget: Widget, colour: str) -> Color:
    with widget.canvas.before:
        fill = Color(*theme.rgba(colour))
        rect = Rectangle(pos=widget.pos, size=widget.size)

    def follow(*_: Any) -> None:
        rect.pos, rect.size = widget.pos, widget.size

    widget.bind(pos=follow, size=follow)
    return fill


class Panel(BoxLayout):
    """A box with a background colour (``theme.PANEL`` unless told)."""

    def __init__(self, colour: str = theme.PANEL, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._fill = _filled(self, colour)

    def set_colour(self, colour: str) -> None:
        self._fill.rgba = theme.rgba(colour)


class Text(Label):
    """Wrapped text that takes the height it needs (in a vertical box)."""

    def __init__(self, text: str = "", *, size_mm: float = theme.TEXT_MM,
                 colour: str = theme.INK, bold: bool = False, halign: str = "left",
                 grow: bool = True, **kwargs: Any) -> None:
        super().__init__(text=text, font_size=mm(size_mm), color=theme.rgba(colour), bold=bold,
                         halign=halign, valign="middle", **kwargs)
        if grow:
            self.size_hint_y = None
            self.height = mm(size_mm) + mm(1)  # until the texture says (empty text: stays)
            self.bind(width=self._wrap, texture_size=self._fit)
        else:
            self.bind(size=self._wrap_both)

    def _wrap(self, *_: Any) -> None:
        self.text_size = (self.width, None)

    def _wrap_both(self, *_: Any) -> None:
        self.text_size = self.size

    def _fit(self, *_: Any) -> None:
        self.height = self.texture_size[1] + mm(1)

    def set_colour(self, colour: str) -> None:
        self.color = theme.rgba(colour)


class Badge(Label):
    """A filled label whose colour says what it means (white text on ``theme.FILL``)."""

    meaning = StringProperty("info")

    def __init__(self, text: str = "", meaning: Meaning = "info", **kwargs: Any) -> None:
        super().__init__(text=text, font_size=mm(theme.SMALL_MM), bold=True,
                         color=theme.rgba(theme.ON_FILL), size_hint=(None, None),
                         height=mm(6), padding=(mm(1.5), 0), **kwargs)
        self._fill = _filled(self, theme.FILL[meaning])
        self.meaning = meaning
        self.bind(texture_size=self._fit, meaning=self._recolour)

    def _fit(self, *_: Any) -> None:
        self.width = self.texture_size[0] + mm(3) if self.text else 0

    def _recolour(self, *_: Any) -> None:
        self._fill.rgba = theme.rgba(theme.FILL.get(self.meaning, theme.FILL["info"]))


class Tap(Button):
    """A tappable target, at least ``PRIMARY_MM`` or ``SECONDARY_MM`` high and wide."""

    fill = ListProperty(list(theme.rgba(theme.BUTTON)))

    def __init__(self, text: str = "", *, target: Target = "secondary",
                 colour: str | None = None, **kwargs: Any) -> None:
        side = mm(theme.PRIMARY_MM if target == "primary" else theme.SECONDARY_MM)
        if colour is None:
            colour = theme.BUTTON if target == "primary" else theme.BUTTON_SECONDARY
        kwargs.setdefault("size_hint_y", None)
        kwargs.setdefault("height", side)
        if kwargs.get("size_hint_x", 1) is None and kwargs.get("width", 0) < side:
            kwargs["width"] = side
        super().__init__(text=text, font_size=mm(theme.TEXT_MM if target == "secondary"
                                                  else theme.TITLE_MM),
                         bold=True, color=theme.rgba(theme.ON_FILL), background_normal="",
                         background_down="", background_color=theme.rgba(colour),
                         halign="center", valign="middle", **kwargs)
        self.target: Target = target
        self.min_side = side
        self.bind(size=self._wrap)

    def _wrap(self, *_: Any) -> None:
        self.text_size = (self.width - mm(2), None)


def gap() -> float:
    """Spacing between targets, in pixels."""
    return float(mm(theme.GAP_MM))


def column(**kwargs: Any) -> BoxLayout:
    """A vertical box with the targets' gap between its children."""
    kwargs.setdefault("spacing", gap())
    return BoxLayout(orientation="vertical", **kwargs)


def scrolling(content: BoxLayout) -> ScrollView:
    """``content`` (as tall as its children) in a vertical scroll view with a wide bar."""
    content.size_hint_y = None
    content.bind(minimum_height=content.setter("height"))
    view = ScrollView(do_scroll_x=False, bar_width=mm(2), scroll_type=["bars", "content"])
    view.add_widget(content)
    return view
