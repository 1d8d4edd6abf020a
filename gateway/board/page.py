"""The board's pages: ``Board`` (config, a Store per thread, the hub, the templates, the
command path) renders each section from ``board_state``; ``HEADERS`` go with every answer."""

from __future__ import annotations

import datetime as _dt
import threading
from collections.abc import Callable
from importlib.resources import files
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from starlette.responses import HTMLResponse

from gateway.board.commands import Commands
from gateway.board.hub import Hub
from gateway.board.state import board_state, cadence_words, local, words
from gateway.config import GatewayConfig
from gateway.store.accounts import AccountStore
from gateway.store.core import Store
from gateway.store.listings import ensure_indexes
from gateway.timefmt import age_text

SECTIONS = ("summary", "conflicts", "proposals", "refused", "tablets", "sources", "quarantine",
            "audit")
ROWS = {"tablets": ("row_tablet.html", "tablets", "device")}
"""Sections whose rows go to open boards one by one: section -> (row template, the state's
list, the key in the row's id ``row-tablet-KEY``)."""

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'unsafe-inline';"
                               " connect-src 'self'; form-action 'self'; frame-ancestors 'none';"
                               " base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer makes Chromium send Origin: null
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(files("gateway.board") / "templates")),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
        lstrip_blocks=True)
    env.filters["words"] = words
    env.filters["age"] = age_text
    env.filters["cadence"] = cadence_words
    return env


class Board:
    """The board's parts: config, store per thread, the hub, templates, the command path."""

    def __init__(self, cfg: GatewayConfig, *, zone: ZoneInfo, commands: Commands,
                 clock: Callable[[], _dt.datetime] | None = None, secure: bool = False,
                 poll_s: float = 0.2, shadow: bool = False) -> None:
        self.cfg = cfg
        self.zone = zone
        self.commands = commands
        self.clock = clock or (lambda: _dt.datetime.now(_dt.UTC))
        self.secure = secure
        self.shadow = shadow
        self.hours = cfg.board.session_hours if cfg.board is not None else 12.0
        self.env = _environment()
        self._local = threading.local()
        self.hub = Hub(cfg.db_path, lambda store, now: self.render_sections(store, now, live=True),
                       clock=self.clock, poll_s=poll_s)
        with Store(cfg.db_path) as store:
            ensure_indexes(store)

    def store(self) -> Store:
        """This thread's Store (SQLite connections belong to one thread)."""
        store = getattr(self._local, "store", None)
        if store is None:
            store = Store(self.cfg.db_path)
            self._local.store = store
        return store

    def accounts(self) -> AccountStore:
        return AccountStore(self.store())

    def context(self, now: _dt.datetime, *, live: bool = False, **extra: Any
                ) -> dict[str, Any]:
        """What every template gets. ``live``: rendered for the event stream, where the
        page's script writes the ages (so a section's HTML changes only when its data does)."""
        zone = self.zone

        def when(value: Any) -> str:
            return local(value, zone)

        offset = now.astimezone(zone).strftime("%Z, UTC%z")
        return {"now": now, "zone": zone.key, "zone_detail": f"{offset[:-2]}:{offset[-2:]}",
                "when": when, "depot": self.cfg.depot,
                "age_of": (lambda _value: "") if live else _age_of(now),
                "shadow": self.shadow, "shape": False, **extra}

    def render_sections(self, store: Store, now: _dt.datetime, *, live: bool = False
                        ) -> tuple[dict[str, str], dict[str, Any]]:
        """Each section's HTML, and the state it shows. ``live`` (the hub's): also each
        section with rows (``ROWS``) as its shape (the rows left empty, ``NAME@shape``) and
        each row on its own (``row-...``), so a change to one tablet sends one row."""
        state = board_state(store, self.cfg, now)
        ctx = self.context(now, s=state, live=live)
        out = {name: self.env.get_template(f"sec_{name}.html").render(ctx)
               for name in SECTIONS if not (live and name in ROWS)}
        if live:  # the frame and the rows once each; the section is the frame filled in
            for name, (template, items, key) in ROWS.items():
                shape = self.env.get_template(f"sec_{name}.html").render({**ctx, "shape": True})
                row = self.env.get_template(template)
                filled = shape
                for item in state[items]:
                    rid = f"row-{name[:-1]}-{item[key]}"
                    out[rid] = row.render({**ctx, "t": item})
                    filled = filled.replace(f'<tr id="{rid}"></tr>', out[rid], 1)
                out[f"{name}@shape"] = shape
                out[name] = filled
        return out, state

    def page(self, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(self.context(self.clock(), **ctx))
        return HTMLResponse(html, status_code=status, headers=HEADERS)


def _age_of(now: _dt.datetime) -> Callable[[Any], str]:
    def age(value: Any) -> str:
        if not value:
            return "never"
        moment = value if isinstance(value, _dt.datetime) else _dt.datetime.fromisoformat(value)
        return age_text((now - moment).total_seconds())
    return age
