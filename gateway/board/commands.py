"""How the board acts: a board action becomes the ``crossdock dispatch`` command body
(``command_body``) and goes through the same command path (``mqtt_commands``: sent as
``crossdock dispatch`` sends it), so refusals, replies and audit are the gateway's own.
``what_it_concerns`` is what a confirmation page shows of the conflict or proposal."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from gateway.dispatch import DispatchConfig, send_command
from gateway.errors import CommandError


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


def command_body(action: str, params: dict[str, str]) -> dict[str, Any] | None:
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


def what_it_concerns(action: str, body: dict[str, Any], state: dict[str, Any]
                     ) -> dict[str, Any]:
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
