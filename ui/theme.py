"""The daylight theme and the glove sizes, as plain data (no Kivy: a test computes contrast).

Colours are sRGB hex. Text is dark on a light page, or white on a dark fill for badges and
buttons; every text/background pair the screens use is listed in ``TEXT_PAIRS`` and must reach
``MIN_CONTRAST`` (WCAG 2 contrast ratio; 7:1 is level AAA) -- ``tests/ui/test_theme.py``
computes each one.

Sizes are real millimetres (``kivy.metrics.mm`` turns them into pixels for the device's dpi):
a primary action at least 15 mm high and wide, a secondary one at least 10 mm, at least 2 mm
between two targets. The sizes used are a little above those minima, so rounding to whole
pixels never takes a target below them.
"""

from __future__ import annotations

from ui.viewmodels import Meaning

MIN_CONTRAST = 7.0

PRIMARY_MIN_MM = 15.0
SECONDARY_MIN_MM = 10.0
GAP_MIN_MM = 2.0

PRIMARY_MM = 16.0
"""Height (and least width) of a primary action: arrived, delivered, a stop on the route."""
SECONDARY_MM = 11.0
"""Height (and least width) of a secondary action: failed, refused, note, dismiss, navigation."""
GAP_MM = 3.0
"""Space between two tappable targets."""

TEXT_MM = 3.4
"""Body text height (about 13 pt): readable at arm's length in a cab."""
SMALL_MM = 2.8
TITLE_MM = 4.6
BIG_MM = 5.6
"""The value of a conflict's candidate: the thing the driver must read first."""

PAGE = "#FFFFFF"
"""The page: white, the most light a screen can send back into sunlight."""
PANEL = "#F1F3F5"
"""Cards and rows, a shade off the page so they read as separate without borders."""
INK = "#111111"
"""Body text."""
INK_SOFT = "#3A3A3A"
"""Secondary text (ages, order ids): still 7:1 on PANEL."""
ON_FILL = "#FFFFFF"
"""Text on a filled badge or button."""

FILL: dict[Meaning, str] = {
    "ok": "#14532D",  # dark green
    "info": "#1E3A8A",  # dark blue
    "pending": "#5B21B6",  # violet: waiting, not wrong
    "warn": "#713F12",  # dark amber-brown (yellow cannot carry white text at 7:1)
    "danger": "#991B1B",  # dark red
    "hold": "#000000",  # black: stop, confirm with dispatch
    "muted": "#404040",  # grey
}
"""The fill of a badge or a button by what it means; white text on it."""

BUTTON = "#0B3D91"
"""A primary action's fill."""
BUTTON_SECONDARY = "#2F3B4C"
"""A secondary action's fill."""

TEXT_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("body text on the page", INK, PAGE),
    ("body text on a panel", INK, PANEL),
    ("secondary text on the page", INK_SOFT, PAGE),
    ("secondary text on a panel", INK_SOFT, PANEL),
    ("primary button label", ON_FILL, BUTTON),
    ("secondary button label", ON_FILL, BUTTON_SECONDARY),
    *((f"{meaning} badge text", ON_FILL, fill) for meaning, fill in FILL.items()),
    *((f"{meaning} status text on a panel", fill, PANEL) for meaning, fill in FILL.items()),
)
"""Every (what, text colour, background colour) the screens draw."""


def rgba(hex_colour: str, alpha: float = 1.0) -> tuple[float, float, float, float]:
    """``#RRGGBB`` as Kivy's 0..1 floats."""
    h = hex_colour.lstrip("#")
    return (int(h[0:2], 16) / 255, int(h[2:4], 16) / 255, int(h[4:6], 16) / 255, alpha)


def _linear(channel: float) -> float:
    return channel / 12.92 if channel <= 0.04045 else ((channel + 0.055) / 1.055) ** 2.4


def luminance(hex_colour: str) -> float:
    """WCAG 2 relative luminance of an sRGB colour."""
    r, g, b, _ = rgba(hex_colour)
    return 0.2126 * _linear(r) + 0.7152 * _linear(g) + 0.0722 * _linear(b)


def contrast(text: str, background: str) -> float:
    """WCAG 2 contrast ratio, 1.0 to 21.0."""
    a, b = sorted((luminance(text), luminance(background)), reverse=True)
    return (a + 0.05) / (b + 0.05)
