"""The board's logins and sessions: ``/login`` (the only route that answers without a session),
``/logout``, and ``Auth.guard``, which every other route goes through.

Without a live session a guarded route answers 401 (pages: 303 to ``/login``). The cookie is
HttpOnly, SameSite=Strict (and Secure over TLS); it holds a random token whose SHA-256 is what
the store keeps (``gateway.store.accounts``). Every POST carries the session's CSRF token (the
login form a token of its own, in a cookie of its own) and, when the browser sends one, a
matching Origin. Wrong passwords are throttled per name and per address.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from gateway.board.page import HEADERS, Board
from gateway.store.accounts import Session

log = logging.getLogger(__name__)

SESSION_COOKIE = "crossdock_board"
LOGIN_COOKIE = "crossdock_login"
LOGIN_FAILURES = 5
"""Wrong passwords for one name (or from one address) within ``LOGIN_WINDOW_S`` before its
logins are refused for that long: scrypt alone would let a guesser on the depot's network try
a few dozen a second."""
LOGIN_WINDOW_S = 300.0
FORM_LIMIT = 64 * 1024
"""A form body larger than this is read as empty (every field missing)."""

Handler = Callable[[Request, str, Session], Any]
"""A guarded route: ``(request, session token, session) -> Response`` (or a coroutine)."""


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


async def read_form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > FORM_LIMIT:
        return {}
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return origin == f"{request.url.scheme}://{request.url.netloc}"


def _refuse(request: Request) -> Response:
    path = request.url.path
    if request.method == "GET" and (path in ("/", "/report") or path.startswith("/confirm/")):
        return RedirectResponse("/login", status_code=303, headers=HEADERS)
    return PlainTextResponse("401: log in first (/login)", status_code=401, headers=HEADERS)


class Auth:
    """Logins, sessions and the guard of every other route, for one ``Board``."""

    def __init__(self, board: Board) -> None:
        self.board = board
        self.throttle = _Throttle()

    def session_of(self, request: Request) -> tuple[str, Session] | None:
        """The request's live session and its token (None: none, ended or expired)."""
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        session = self.board.accounts().session(token, self.board.clock())
        return None if session is None else (token, session)

    def guard(self, fn: Handler) -> Callable[[Request], Awaitable[Response]]:
        """``fn`` behind a live session; a POST also behind the session's CSRF token and a
        same-origin check (its form is ``request.state.form``)."""
        async def endpoint(request: Request) -> Response:
            found = await asyncio.to_thread(self.session_of, request)
            if found is None:
                return _refuse(request)
            token, session = found
            if request.method == "POST":
                form = await read_form(request)
                if (not hmac.compare_digest(form.get("csrf", ""), session.csrf)
                        or not _same_origin(request)):
                    return PlainTextResponse("403: the form's token does not match this "
                                             "session; reload the board", status_code=403,
                                             headers=HEADERS)
                request.state.form = form
            result = fn(request, token, session)
            if asyncio.iscoroutine(result):
                return await result  # type: ignore[no-any-return]
            return result  # type: ignore[no-any-return]
        return endpoint

    def _login_page(self, *, error: str = "", status: int = 200) -> Response:
        token = secrets.token_urlsafe(24)
        response = self.board.page("login.html", status, login_csrf=token, error=error)
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict",
                            secure=self.board.secure, path="/login", max_age=3600)
        return response

    async def login_get(self, request: Request) -> Response:
        return self._login_page()

    async def login_post(self, request: Request) -> Response:
        board = self.board
        form = await read_form(request)
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if (not expected or not hmac.compare_digest(expected, form.get("csrf", ""))
                or not _same_origin(request)):
            return self._login_page(error="The form expired: try again.", status=403)
        name, password = form.get("name", "").strip(), form.get("password", "")
        keys = [f"name:{name}", f"addr:{request.client.host if request.client else '?'}"]
        if self.throttle.blocked(keys, time.monotonic()):
            return self._login_page(status=429, error=(
                f"Too many wrong passwords: logins for {name or 'this address'} are refused "
                f"for {LOGIN_WINDOW_S / 60:.0f} minutes."))

        def check() -> tuple[str, Session] | None:
            accounts = board.accounts()
            if not accounts.check_login(name, password):
                return None
            return accounts.open_session(name, board.clock(), board.hours)

        opened = await asyncio.to_thread(check)
        if opened is None:
            self.throttle.failed(keys, time.monotonic())
            log.warning("board: wrong password for %r from %s", name, keys[1][5:])
            return self._login_page(error="Wrong name or password.", status=401)
        self.throttle.succeeded(keys)
        response = RedirectResponse("/", status_code=303, headers=HEADERS)
        response.set_cookie(SESSION_COOKIE, opened[0], httponly=True, samesite="strict",
                            secure=board.secure, path="/", max_age=int(board.hours * 3600))
        response.delete_cookie(LOGIN_COOKIE, path="/login")
        return response

    async def logout(self, request: Request, token: str, session: Session) -> Response:
        await asyncio.to_thread(
            lambda: self.board.accounts().close_session(token, self.board.clock()))
        response = RedirectResponse("/login", status_code=303, headers=HEADERS)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    def routes(self) -> list[Route]:
        return [Route("/login", self.login_get, methods=["GET"]),
                Route("/login", self.login_post, methods=["POST"]),
                Route("/logout", self.guard(self.logout), methods=["POST"])]
