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

Every route but ``/login`` goes through ``Auth.guard`` (``gateway.board.auth``: sessions,
cookies, CSRF, throttled logins); what a page shows is rendered by ``Board``
(``gateway.board.page``) from ``board_state``; an action becomes a ``crossdock dispatch``
command (``gateway.board.commands``) and goes the same path.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from importlib.resources import files
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway.board.auth import Auth
from gateway.board.commands import command_body, what_it_concerns
from gateway.board.page import HEADERS, SECTIONS, Board
from gateway.board.state import board_state
from gateway.shadow import report
from gateway.store.accounts import Session

HEARTBEAT_S = 15.0
"""An open event stream without news hears a comment this often, and its session is checked
again (a board logged out elsewhere, or expired, is told ``bye``)."""
SCRIPTS = ("board.js",)


def create_app(board: Board) -> Starlette:
    """The ASGI app. Start ``board.hub`` alongside it (``BoardServer`` does)."""
    auth = Auth(board)
    guard = auth.guard

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
                        if await asyncio.to_thread(auth.session_of, request) is None:
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
                                 headers={**HEADERS, "X-Accel-Buffering": "no"})

    async def api_state(request: Request, token: str, session: Session) -> Response:
        _sections, state = await asyncio.to_thread(
            lambda: board.render_sections(board.store(), board.clock()))
        return JSONResponse(state, headers=HEADERS)

    def _report() -> dict[str, Any]:
        return report(board.store(), board.cfg, zone=board.zone)

    async def api_report(request: Request, token: str, session: Session) -> Response:
        return JSONResponse(await asyncio.to_thread(_report), headers=HEADERS)

    async def report_page(request: Request, token: str, session: Session) -> Response:
        data = await asyncio.to_thread(_report)
        return board.page("report.html", user=session.name, csrf=session.csrf, report=data)

    async def static(request: Request, token: str, session: Session) -> Response:
        name = request.path_params["name"]
        if name not in SCRIPTS:
            return PlainTextResponse("404", status_code=404, headers=HEADERS)
        text = (files("gateway.board") / "static" / name).read_text(encoding="utf-8")
        return Response(text, media_type="text/javascript",
                        headers={**HEADERS, "Cache-Control": "private, max-age=60"})

    async def confirm(request: Request, token: str, session: Session) -> Response:
        action = request.path_params["action"]
        params = dict(request.query_params)
        if action == "assign":  # the driver is typed on the confirmation page
            params.setdefault("driver", "-")
        body = command_body(action, params)
        if body is not None and action == "assign" and body["driver"] == "-":
            body["driver"] = ""
        if body is None:
            return PlainTextResponse(f"400: {action}: missing or unknown parameters",
                                     status_code=400, headers=HEADERS)

        def look() -> dict[str, Any]:
            state = board_state(board.store(), board.cfg, board.clock())
            return what_it_concerns(action, body, state)

        what = await asyncio.to_thread(look)
        return board.page("confirm.html", user=session.name, csrf=session.csrf,
                          action=action, body=body, what=what)

    async def act(request: Request, token: str, session: Session) -> Response:
        action = request.path_params["action"]
        body = command_body(action, request.state.form)
        if body is None:
            return PlainTextResponse(f"400: {action}: missing or unknown parameters",
                                     status_code=400, headers=HEADERS)
        reply = await asyncio.to_thread(board.commands, session.name, body)
        return board.page("result.html", status=200 if reply.ok else 409, user=session.name,
                          csrf=session.csrf, action=action, body=body, reply=reply)

    routes = [
        *auth.routes(),
        Route("/", guard(index), methods=["GET"]),
        Route("/events", guard(events), methods=["GET"]),
        Route("/report", guard(report_page), methods=["GET"]),
        Route("/api/state", guard(api_state), methods=["GET"]),
        Route("/api/report", guard(api_report), methods=["GET"]),
        Route("/static/{name}", guard(static), methods=["GET"]),
        Route("/confirm/{action}", guard(confirm), methods=["GET"]),
        Route("/act/{action}", guard(act), methods=["POST"]),
    ]
    return Starlette(routes=routes)
