"""The dispatch board's web routes (Starlette): thin — check the session, call the gateway's
library or the dispatch command path, render.

=====================  ======================================================================
route                  does
=====================  ======================================================================
GET  /login            the login form (the only page that answers without a session)
POST /login            name + password (scrypt) -> a session cookie; a wrong one: 401
POST /logout           ends the session
GET  /                 the board: every section, then live by the event stream
GET  /events           Server-Sent Events: changed sections as HTML, at most a few a second
GET  /report           the shadow-rollout report, one table per day
GET  /confirm/ACTION   resolve | assign | approve | reject: what will be sent, and a form
POST /act/ACTION       sends it as ``crossdock dispatch`` does; shows the gateway's reply
GET  /api/state        the board's state as JSON;  GET /api/report: the report as JSON
GET  /static/NAME      the page's script
=====================  ======================================================================

Without a live session every route but ``/login`` answers 401 (pages: 303 to ``/login``).
The cookie is HttpOnly, SameSite=Strict (and Secure over TLS); it holds a random token whose
SHA-256 is what the store keeps. Every POST carries the session's CSRF token (the login form a
token of its own, in a cookie of its own) and, when the browser sends one, a matching Origin.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import hmac
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from gateway.board.hub import Hub
from gateway.board.state import age_text, board_state, cadence_words, local, words
from gateway.config import GatewayConfig
from gateway.dispatch import DispatchConfig, send_command
from gateway.errors import CommandError
from gateway.shadow import report
from gateway.store.accounts import AccountStore, Session
from gateway.store.core import Store
from gateway.store.listings import ensure_indexes

log = logging.getLogger(__name__)

SESSION_COOKIE = "crossdock_board"
LOGIN_COOKIE = "crossdock_login"
SECTIONS = ("summary", "conflicts", "proposals", "refused", "tablets", "sources", "quarantine",
            "audit")
ROWS = {"tablets": ("row_tablet.html", "tablets", "device")}
"""Sections whose rows go to open boards one by one: section -> (row template, the state's
list, the key in the row's id ``row-tablet-KEY``)."""
HEARTBEAT_S = 15.0
LOGIN_FAILURES = 5
"""Wrong passwords for one name (or from one address) within ``LOGIN_WINDOW_S`` before its
logins are refused for that long: scrypt alone would let a guesser on the depot's network try
a few dozen a second."""
LOGIN_WINDOW_S = 300.0


class _Throttle:
    """Failed logins per key (a name, an address), in memory: a restart forgets them."""

    def __init__(self) -> None:
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, keys: list[str], now: float) -> bool:
        with self._lock:
            return any(len([t for t in self._failures.get(k, []) if now - t < LOGIN_WINDOW_S])
                       >= LOGIN_FAILURES for k in keys)

    def failed(self, keys: list[str], now: float) -> None:
        with self._lock:
            for k in keys:
                recent = [t for t in self._failures.get(k, []) if now - t < LOGIN_WINDOW_S]
                self._failures[k] = [*recent, now]

    def succeeded(self, keys: list[str]) -> None:
        with self._lock:
            for k in keys:
                self._failures.pop(k, None)


@dataclass(frozen=True)
class Reply:
    ok: bool
    reason: str
    detail: dict[str, Any]


Commands = Callable[[str, dict[str, Any]], Reply]
"""``(person, command body) -> the gateway's reply``: how the board acts."""


def mqtt_commands(dispatch: DispatchConfig, *, timeout: float = 10.0) -> Commands:
    """Send each command as ``crossdock dispatch`` does, with the person's name as the client
    name (the gateway audits it as ``dispatch:NAME``; replies come on ``replies/NAME``)."""
    def send(person: str, body: dict[str, Any]) -> Reply:
        try:
            reply = send_command(replace(dispatch, client=person), body, timeout=timeout)
        except CommandError as exc:
            return Reply(False, str(exc), {})
        return Reply(reply.body.ok, reply.body.reason, dict(reply.body.detail))
    return send


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

    # --- rendering ---------------------------------------------------------------------

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
        return HTMLResponse(html, status_code=status, headers=_HEADERS)


def _age_of(now: _dt.datetime) -> Callable[[Any], str]:
    def age(value: Any) -> str:
        if not value:
            return "never"
        moment = value if isinstance(value, _dt.datetime) else _dt.datetime.fromisoformat(value)
        return age_text((now - moment).total_seconds())
    return age


_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'unsafe-inline';"
                               " connect-src 'self'; form-action 'self'; frame-ancestors 'none';"
                               " base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer makes Chromium send Origin: null
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


# --- sessions ----------------------------------------------------------------------------


def _session(board: Board, request: Request) -> tuple[str, Session] | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    session = board.accounts().session(token, board.clock())
    return None if session is None else (token, session)


def _refuse(request: Request) -> Response:
    path = request.url.path
    if request.method == "GET" and (path in ("/", "/report") or path.startswith("/confirm/")):
        return RedirectResponse("/login", status_code=303, headers=_HEADERS)
    return PlainTextResponse("401: log in first (/login)", status_code=401, headers=_HEADERS)


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > 64 * 1024:
        return {}
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return origin == f"{request.url.scheme}://{request.url.netloc}"


def create_app(board: Board) -> Starlette:
    """The ASGI app. Start ``board.hub`` alongside it (``BoardServer`` does)."""
    throttle = _Throttle()

    def login_page(request: Request, *, error: str = "", status: int = 200) -> Response:
        token = secrets.token_urlsafe(24)
        response = board.page("login.html", status, login_csrf=token, error=error)
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict",
                            secure=board.secure, path="/login", max_age=3600)
        return response

    async def login_get(request: Request) -> Response:
        return login_page(request)

    async def login_post(request: Request) -> Response:
        form = await _form(request)
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if (not expected or not hmac.compare_digest(expected, form.get("csrf", ""))
                or not _same_origin(request)):
            return login_page(request, error="The form expired: try again.", status=403)
        name, password = form.get("name", "").strip(), form.get("password", "")
        keys = [f"name:{name}", f"addr:{request.client.host if request.client else '?'}"]
        if throttle.blocked(keys, time.monotonic()):
            return login_page(request, status=429, error=(
                f"Too many wrong passwords: logins for {name or 'this address'} are refused "
                f"for {LOGIN_WINDOW_S / 60:.0f} minutes."))

        def check() -> tuple[str, Session] | None:
            accounts = board.accounts()
            if not accounts.check_login(name, password):
                return None
            return accounts.open_session(name, board.clock(), board.hours)

        opened = await asyncio.to_thread(check)
        if opened is None:
            throttle.failed(keys, time.monotonic())
            log.warning("board: wrong password for %r from %s", name, keys[1][5:])
            return login_page(request, error="Wrong name or password.", status=401)
        throttle.succeeded(keys)
        token = opened[0]
        response = RedirectResponse("/", status_code=303, headers=_HEADERS)
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict",
                            secure=board.secure, path="/",
                            max_age=int(board.hours * 3600))
        response.delete_cookie(LOGIN_COOKIE, path="/login")
        return response

    def authed(fn: Callable[[Request, str, Session], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            found = await asyncio.to_thread(_session, board, request)
            if found is None:
                return _refuse(request)
            token, session = found
            if request.method == "POST":
                form = await _form(request)
                if (not hmac.compare_digest(form.get("csrf", ""), session.csrf)
                        or not _same_origin(request)):
                    return PlainTextResponse("403: the form's token does not match this "
                                             "session; reload the board", status_code=403,
                                             headers=_HEADERS)
                request.state.form = form
            result = fn(request, token, session)
            if asyncio.iscoroutine(result):
                return await result  # type: ignore[no-any-return]
            return result  # type: ignore[no-any-return]
        return endpoint

    async def logout(request: Request, token: str, session: Session) -> Response:
        await asyncio.to_thread(lambda: board.accounts().close_session(token, board.clock()))
        response = RedirectResponse("/login", status_code=303, headers=_HEADERS)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def index(request: Request, token: str, session: Session) -> Response:
        sections, _state = await asyncio.to_thread(
            lambda: board.render_sections(board.store(), board.clock()))
        return board.page("board.html", user=session.name, csrf=session.csrf,
                          sections=sections, sections_order=SECTIONS)

    async def events(request: Request, token: str, session: Session) -> Response:
        async def stream() -> AsyncIterator[str]:
            key, queue = board.hub.subscribe()
            try:
                yield "retry: 2000\n\n"
                while True:
                    try:
                        payload = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                    except TimeoutError:
                        if await asyncio.to_thread(_session, board, request) is None:
                            yield "event: bye\ndata: {}\n\n"
                            return
                        yield ": still here\n\n"
                        continue
                    if not payload:  # the server is stopping
                        return
                    yield f"event: sections\ndata: {payload}\n\n"
            finally:
                board.hub.unsubscribe(key)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={**_HEADERS, "X-Accel-Buffering": "no"})

    async def api_state(request: Request, token: str, session: Session) -> Response:
        _sections, state = await asyncio.to_thread(
            lambda: board.render_sections(board.store(), board.clock()))
        return JSONResponse(state, headers=_HEADERS)

    def _report() -> dict[str, Any]:
        return report(board.store(), board.cfg, zone=board.zone)

    async def api_report(request: Request, token: str, session: Session) -> Response:
        return JSONResponse(await asyncio.to_thread(_report), headers=_HEADERS)

    async def report_page(request: Request, token: str, session: Session) -> Response:
        data = await asyncio.to_thread(_report)
        return board.page("report.html", user=session.name, csrf=session.csrf, report=data)

    async def static(request: Request, token: str, session: Session) -> Response:
        name = request.path_params["name"]
        if name not in ("board.js",):
            return PlainTextResponse("404", status_code=404, headers=_HEADERS)
        text = (files("gateway.board") / "static" / name).read_text(encoding="utf-8")
        return Response(text, media_type="text/javascript",
                        headers={**_HEADERS, "Cache-Control": "private, max-age=60"})

    async def confirm(request: Request, token: str, session: Session) -> Response:
        action = request.path_params["action"]
        q = request.query_params
        params = dict(q)
        if action == "assign":  # the driver is typed on the confirmation page
            params.setdefault("driver", "-")
        body = _command(action, params)
        if body is not None and action == "assign" and body["driver"] == "-":
            body["driver"] = ""
        if body is None:
            return PlainTextResponse(f"400: {action}: missing or unknown parameters",
                                     status_code=400, headers=_HEADERS)

        def look() -> dict[str, Any]:
            state = board_state(board.store(), board.cfg, board.clock())
            return _what(action, body, state)

        what = await asyncio.to_thread(look)
        return board.page("confirm.html", user=session.name, csrf=session.csrf,
                          action=action, body=body, what=what)

    async def act(request: Request, token: str, session: Session) -> Response:
        action = request.path_params["action"]
        body = _command(action, request.state.form)
        if body is None:
            return PlainTextResponse(f"400: {action}: missing or unknown parameters",
                                     status_code=400, headers=_HEADERS)
        reply = await asyncio.to_thread(board.commands, session.name, body)
        return board.page("result.html", status=200 if reply.ok else 409, user=session.name,
                          csrf=session.csrf, action=action, body=body, reply=reply)

    routes = [
        Route("/login", login_get, methods=["GET"]),
        Route("/login", login_post, methods=["POST"]),
        Route("/logout", authed(logout), methods=["POST"]),
        Route("/", authed(index), methods=["GET"]),
        Route("/events", authed(events), methods=["GET"]),
        Route("/report", authed(report_page), methods=["GET"]),
        Route("/api/state", authed(api_state), methods=["GET"]),
        Route("/api/report", authed(api_report), methods=["GET"]),
        Route("/static/{name}", authed(static), methods=["GET"]),
        Route("/confirm/{action}", authed(confirm), methods=["GET"]),
        Route("/act/{action}", authed(act), methods=["POST"]),
    ]
    return Starlette(routes=routes)


def _command(action: str, params: dict[str, str]) -> dict[str, Any] | None:
    """The ``crossdock dispatch`` command body of a board action (None: not one)."""
    def need(*keys: str) -> dict[str, str] | None:
        values = {k: params.get(k, "").strip() for k in keys}
        return None if any(not v for v in values.values()) else values

    if action == "resolve":
        got = need("order_id", "field", "choose")
        return None if got is None else {"action": "resolve", **got}
    if action == "assign":
        got = need("order_id", "driver")
        return None if got is None else {"action": "assign", **got, "override": True}
    if action in ("approve", "reject"):
        got = need("proposal_id")
        return None if got is None else {"action": action, **got}
    return None


def _what(action: str, body: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """What the confirmation page shows: the conflict or proposal as the store has it now."""
    if action in ("resolve", "assign"):
        field = body.get("field", "driver")
        found = [c for c in state["conflicts"]
                 if c["order_id"] == body["order_id"] and c["field"] == field]
        chosen = [k for c in found for k in c["candidates"]
                  if body.get("choose") in (k["claim_id"], k["source"])]
        return {"conflict": found[0] if found else None,
                "chosen": chosen[0] if chosen else None}
    found = [p for p in state["proposals"] if p["proposal_id"] == body["proposal_id"]]
    return {"proposal": found[0] if found else None}
