"""A real Kivy window for the ``ui`` tests: Xvfb on a display it picks, software GL.

* Kivy's environment is set when this module is imported (before anything imports Kivy):
  a temporary ``KIVY_HOME``, ``KIVY_NO_ARGS=1`` (Kivy must not read pytest's arguments),
  Kivy's logging left to Python's (``KIVY_LOG_MODE=PYTHON``: the suite's handlers stay), Mesa's
  software rasteriser, and 150 dpi: a 10" 1280x800 tablet, so ``kivy.metrics.mm`` is the
  tablet's millimetre.
* ``window`` (session): starts ``Xvfb -displayfd`` (it chooses a free display and tells which),
  then opens Kivy's one window for the whole run; Xvfb is stopped at the end. A Kivy window is
  one per process, so every UI test shares it and adds/removes its own root widget.
* ``Kiosk``: the helpers a test drives the window with: ``pump`` frames, ``tap`` a widget at
  its position on screen (a touch down and up through Kivy's input path), ``until`` a condition
  holds while frames run, ``shoot`` a screenshot in both orientations.

Screenshots go to a temporary folder, or to ``$CROSSDOCK_SCREENSHOTS`` (``scripts/screenshots``
sets it to ``docs/screenshots``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_KIVY_HOME = tempfile.mkdtemp(prefix="crossdock-kivy-")
os.environ["KIVY_HOME"] = _KIVY_HOME
os.environ["KIVY_NO_ARGS"] = "1"
os.environ["KIVY_LOG_MODE"] = "PYTHON"
os.environ["KIVY_NO_FILELOG"] = "1"
os.environ["KIVY_NO_CONSOLELOG"] = "1"
os.environ["KIVY_WINDOW"] = "sdl2"
os.environ["KIVY_CLIPBOARD"] = "sdl2"  # not xclip/xsel, which a fresh box lacks
os.environ["KIVY_DPI"] = "150"
os.environ["KIVY_METRICS_DENSITY"] = "1"
os.environ["LIBGL_ALWAYS_SOFTWARE"] = "1"

LANDSCAPE = (1280, 800)
PORTRAIT = (800, 1280)


def _start_xvfb() -> tuple[subprocess.Popen[bytes], str]:
    read, write = os.pipe()
    try:
        proc = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x1280x24",
             "-nolisten", "tcp"],
            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        os.close(write)
    number = b""
    with os.fdopen(read, "rb") as pipe:
        while not number.endswith(b"\n"):
            chunk = pipe.read(1)
            if not chunk:
                proc.kill()
                proc.wait()
                raise RuntimeError("Xvfb exited before naming its display (is xvfb installed? "
                                   "scripts/system-packages installs it)")
            number += chunk
    return proc, f":{number.decode().strip()}"


class Kiosk:
    """Drives the one Kivy window."""

    def __init__(self, shots: Path) -> None:
        from kivy.base import EventLoop
        from kivy.core.window import Window

        self.loop = EventLoop
        self.window = Window
        self.shots = shots

    def pump(self, frames: int = 3) -> None:
        for _ in range(frames):
            self.loop.idle()

    def until(self, condition: Callable[[], Any], timeout: float = 20.0) -> bool:
        """Run frames until ``condition()`` is true; False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump(1)
            if condition():
                return True
            time.sleep(0.01)
        return bool(condition())

    def resize(self, size: tuple[int, int]) -> None:
        self.window.size = size
        self.until(lambda: tuple(self.window.size) == size, 5)
        self.pump(4)

    def tap(self, widget: Any) -> None:
        """A finger on the widget's centre, as the window sees it: down, then up."""
        from kivy.tests.common import UnitTestTouch

        self.pump(2)  # laid out where it is now shown
        assert widget.get_root_window() is not None, f"{widget} is not on screen"
        x, y = widget.to_window(*widget.center)
        assert 0 <= x < self.window.width and 0 <= y < self.window.height, (x, y)
        touch = UnitTestTouch(x, y)
        touch.touch_down()
        self.pump(1)
        touch.touch_up()
        # a ScrollView hands a tap to its content and releases it 0.2 s later: let it
        end = time.monotonic() + 0.35
        while time.monotonic() < end:
            self.pump(1)
            time.sleep(0.02)

    def shoot(self, root: Any, name: str) -> list[Path]:
        """``name``-landscape.png and ``name``-portrait.png of the root widget."""
        out = []
        for orientation, size in (("landscape", LANDSCAPE), ("portrait", PORTRAIT)):
            self.resize(size)
            root.refresh_now()
            self.pump(4)
            path = self.shots / f"{name}-{orientation}.png"
            root.export_to_png(str(path))
            out.append(path)
        self.resize(LANDSCAPE)
        root.refresh_now()
        self.pump(2)
        return out


@pytest.fixture(scope="session")
def window() -> Iterator[Kiosk]:
    if shutil.which("Xvfb") is None:
        pytest.fail("Xvfb is not installed: run scripts/system-packages")
    proc, display = _start_xvfb()
    os.environ["DISPLAY"] = display
    shots = Path(os.environ.get("CROSSDOCK_SCREENSHOTS") or tempfile.mkdtemp(
        prefix="crossdock-shots-"))
    shots.mkdir(parents=True, exist_ok=True)
    try:
        from kivy.config import Config

        Config.set("graphics", "width", str(LANDSCAPE[0]))
        Config.set("graphics", "height", str(LANDSCAPE[1]))
        Config.set("input", "mouse", "mouse,disable_multitouch")
        kiosk = Kiosk(shots)
        kiosk.loop.ensure_window()
        kiosk.pump(2)
        yield kiosk
        kiosk.window.close()
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(_KIVY_HOME, ignore_errors=True)


@pytest.fixture
def kiosk(window: Kiosk) -> Iterator[Kiosk]:
    """The window, cleared after the test (its root widgets removed, landscape again)."""
    yield window
    for child in list(window.window.children):
        close = getattr(child, "close", None)
        if close is not None:
            close()
        window.window.remove_widget(child)
    window.resize(LANDSCAPE)
