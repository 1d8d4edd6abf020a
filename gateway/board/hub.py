"""One reader for every open board: it watches the store and hands each change to them all.

The hub's thread owns a Store of its own and polls SQLite's ``data_version`` (it changes
whenever another connection commits) every ``poll_s``. On a change it reads the board's state
once, renders each section once, and puts the sections whose HTML changed on every subscriber's
queue (an ``asyncio.Queue`` of the event loop serving that board's event stream). Twenty open
boards cost one read and one render per change, not twenty; with no board open the hub reads
nothing. Redraws are at least ``min_gap_s`` apart, and at least twice as far apart as the last
one took, so a busy gateway (a big export merging) is not slowed by its boards: they catch up
with the state at the end of each gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from gateway.store.core import Store
from gateway.store.listings import data_version

log = logging.getLogger(__name__)

Render = Callable[[Store, _dt.datetime], tuple[dict[str, str], dict[str, Any]]]
"""``(store, now) -> (section id -> HTML, state)``."""


class Hub:
    def __init__(self, db_path: Any, render: Render, *,
                 clock: Callable[[], _dt.datetime], poll_s: float = 0.2,
                 min_gap_s: float = 0.3) -> None:
        self.db_path = db_path
        self.render = render
        self.clock = clock
        self.poll_s = poll_s
        self.min_gap_s = min_gap_s
        self.sections: dict[str, str] = {}
        self._shapes: dict[str, str] = {}
        self._rows: dict[str, str] = {}
        self.version = 0
        self.renders = 0
        self.render_s = 0.0  # CPU-ish wall time spent rendering, all told
        self._subs: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Queue[str]]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- subscribers (the event streams, on the server's event loop) ---------------------

    def subscribe(self) -> tuple[int, asyncio.Queue[str]]:
        """A new board's queue, holding every section as it is now (once rendered)."""
        q: asyncio.Queue[str] = asyncio.Queue()
        with self._lock:
            key = id(q)
            self._subs[key] = (asyncio.get_running_loop(), q)
            if self.sections:
                q.put_nowait(self._payload(self.sections))
        self._wake.set()
        return key, q

    def unsubscribe(self, key: int) -> None:
        with self._lock:
            self._subs.pop(key, None)

    def end_streams(self) -> None:
        """Tell every open event stream to end (the server is stopping)."""
        with self._lock:
            subs = list(self._subs.values())
        for loop, q in subs:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(q.put_nowait, "")

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def _payload(self, sections: dict[str, str], rows: dict[str, str] | None = None) -> str:
        return json.dumps({"version": self.version, "at": self.clock().isoformat(),
                           "sections": sections, "rows": rows or {}}, ensure_ascii=False)

    # --- the reader thread -------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="crossdock-board-hub",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        store = Store(self.db_path)
        seen: int | None = None
        next_at = 0.0
        try:
            while not self._stop.is_set():
                self._wake.wait(self.poll_s)
                self._wake.clear()
                if self._stop.is_set() or not self._subs:
                    seen = None  # nobody watching: read nothing, redraw on the next board
                    continue
                if time.monotonic() < next_at:
                    continue
                try:
                    version = data_version(store)
                    if version == seen and self.sections:
                        continue
                    started = time.monotonic()
                    sections, _state = self.render(store, self.clock())
                    took = time.monotonic() - started
                except Exception:  # the board must outlive a bad read; said, tried again
                    log.exception("board: could not read the store")
                    next_at = time.monotonic() + 5
                    continue
                seen = version
                self.renders += 1
                self.render_s += took
                next_at = time.monotonic() + max(self.min_gap_s, 2 * took)
                self._publish(sections)
        finally:
            store.close()

    def _publish(self, rendered: dict[str, str]) -> None:
        """Hand on what changed: a section whose HTML changed, or, for a section with rows
        whose shape (``NAME@shape``: the rows left empty) is as before, only its changed rows
        (``row-...``)."""
        sections = {k: v for k, v in rendered.items() if "@" not in k and not k.startswith("row-")}
        shapes = {k: v for k, v in rendered.items() if "@" in k}
        rows = {k: v for k, v in rendered.items() if k.startswith("row-")}
        changed = {k: v for k, v in sections.items() if self.sections.get(k) != v}
        for key, shape in shapes.items():
            name = key.split("@")[0]
            if name in changed and self._shapes.get(key) == shape:
                del changed[name]  # same rows, same frame: the changed rows go instead
        # rows go unless their whole section does
        changed_rows = {k: v for k, v in rows.items() if self._rows.get(k) != v and not any(
            k.startswith(f"row-{name[:-1]}-") for name in changed)}
        self._shapes, self._rows = shapes, rows
        if not changed and not changed_rows:
            with self._lock:
                self.sections = dict(sections)
            return
        with self._lock:
            self.sections = dict(sections)
            self.version += 1
            payload = self._payload(changed, changed_rows)
            subs = list(self._subs.values())
        for loop, q in subs:
            with contextlib.suppress(RuntimeError):  # that board's loop closed: it is leaving
                loop.call_soon_threadsafe(q.put_nowait, payload)
