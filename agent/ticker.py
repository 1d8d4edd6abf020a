"""The agent's ticker thread: when it looks, as ``sync.follow.wake`` says (I/O around it).

An idle tablet does not wake four times a second for nothing: the ticker polls every
``tick_s`` only while a gap or observers not yet told are pending; otherwise it sleeps until
the next thing is due (an ``Applied``, the quiet resync, the handover look), or until a
message makes something due sooner (``nudge``). What it does when it looks is the engine's
``tick`` (``agent.engine``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Protocol

from agent.model import ChangeKind
from sync import follow

log = logging.getLogger(__name__)


class Tickable(Protocol):
    """What the ticker reads and calls (``agent.engine.Engine``)."""

    state: follow.Follow
    timing: follow.Timing
    clock: Callable[[], float]
    following: bool

    @property
    def online(self) -> bool: ...

    def unnotified(self) -> bool: ...

    def notify(self, what: Iterable[ChangeKind]) -> None: ...

    def tick(self) -> None: ...


class Ticker:
    """One daemon thread over a ``Tickable``; ``start()``, ``nudge()`` after a message,
    ``stop()``."""

    def __init__(self, engine: Tickable) -> None:
        self._engine = engine
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake = threading.Event()  # set: the ticker should look now (it may be sleeping long)
        self._idle = False  # the ticker sleeps past tick_s, until _until or a nudge
        self._until = float("inf")  # clock() at which an idle ticker looks again

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="agent-ticker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def nudge(self) -> None:
        """After a message: wake a ticker that sleeps long if the message made work due sooner
        than it looks again (``sync.follow.wakes_sooner``) or left observers to tell. Read
        without the lock: the ticker says it is idle, and until when, BEFORE it looks at the
        state, and this looks AFTER the state was written, so one of the two always sees the
        other (at worst the ticker wakes once for nothing)."""
        engine = self._engine
        if self._idle and (engine.unnotified() or follow.wakes_sooner(
                engine.state, engine.timing, self._until)):
            self._wake.set()

    def _loop(self) -> None:
        """Wait as ``sync.follow.wake`` says, then ``tick``: a gap or observers not yet told
        are looked at every tick_s; an ``Applied`` is sent when it is due, not polled for."""
        engine = self._engine
        while not self._stopping.is_set():
            self._idle = True
            self._until = float("inf")  # until it knows: any nudge wakes it
            now = engine.clock()
            wake = follow.wake(engine.state, engine.timing, now,
                               online=engine.following and engine.online,
                               unnotified=engine.unnotified())
            if wake.poll:
                self._idle = False
                # due within tick_s, not at once: a burst's next messages join this tick
                if self._stopping.wait(wake.after_s):
                    break
            else:
                self._until = now + wake.after_s
                nudged = self._wake.wait(wake.after_s)
                self._wake.clear()
                self._idle = False
                if nudged:  # a message made work due sooner (or stop): look again, or stop
                    continue
            try:
                if engine.unnotified():
                    engine.notify(())
                engine.tick()
            except Exception:
                log.exception("agent ticker failed")
