"""``crossdock dispatch``: send a command to the gateway over MQTT and print its reply.

The config is ``dispatch.toml`` (written by ``gateway init``) or the gateway's own
``gateway.toml`` (then the dispatch credential is read from ``dispatch.toml`` beside it). A
refusal prints the gateway's one-line reason and exits 1; no reply within ``--timeout`` exits 1
with "no reply" (the command may still be applied: it is idempotent, so send it again).

The broker makes a client's username its client id (``use_username_as_clientid``): one
dispatch identity has one connection at a time, and a second would replace the first. So
commands sent with one identity from this box wait for each other (``_one_at_a_time``: a lock
file per depot and identity in the temporary folder); from two boxes they must not overlap.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import queue
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from gateway.config import load_config, read_toml
from gateway.errors import CommandError, ConfigError
from gateway.streams.link import LinkMaker
from gateway.streams.mqtt import LinkSettings, MqttLink
from sync.codec import decode, encode
from sync.envelope import ENVELOPE, DispatchReplyMsg
from sync.errors import CodecError
from sync.topics import Topics, check_segment


@dataclass(frozen=True)
class DispatchConfig:
    depot: str
    client: str
    host: str
    port: int
    username: str | None
    password: str | None


def _port(path: Path, value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config {path}: broker.port: {value!r} is not a port number") from None


def load_dispatch_config(path: Path) -> DispatchConfig:
    data = read_toml(path)
    broker = data.get("broker", {})
    if not isinstance(broker, dict):
        raise ConfigError(f"config {path}: broker: want a [broker] table")
    if "sources" in data or "db" in data:  # the gateway's own file
        beside = path.resolve().parent / "dispatch.toml"
        if beside.exists():
            return load_dispatch_config(beside)
        cfg = load_config(path)  # validated as the gateway reads it
        host, port = cfg.broker.address
        return DispatchConfig(cfg.depot, "dispatch", host, port, cfg.broker.username,
                              cfg.broker.password or None)  # as the gateway connects
    try:
        return DispatchConfig(
            depot=check_segment(str(data["depot"]), "depot"),
            client=check_segment(str(data.get("client", "dispatch")), "client"),
            host=str(broker.get("host", "127.0.0.1")),
            port=_port(path, broker.get("port", 1883)),
            username=broker.get("username"),
            password=broker.get("password"),
        )
    except KeyError as exc:
        raise ConfigError(f"config {path}: missing key {exc.args[0]!r}") from None


@contextlib.contextmanager
def _one_at_a_time(cfg: DispatchConfig, timeout: float) -> Iterator[None]:
    """Hold this box's lock for the identity ``cfg`` connects as (none without a username);
    CommandError when another command holds it for longer than ``timeout``."""
    if not cfg.username:
        yield
        return
    path = Path(tempfile.gettempdir()) / f"crossdock-dispatch-{cfg.depot}-{cfg.username}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:  # another account's lock file: that account cannot share our identity
        yield
        return
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise CommandError(
                        f"another dispatch command as {cfg.username} is still waiting for its "
                        f"reply after {timeout:g} s; try again") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def send_command(cfg: DispatchConfig, body: dict[str, Any], *, timeout: float = 10.0,
                 link_maker: LinkMaker = MqttLink) -> DispatchReplyMsg:
    """Publish one command and wait for the gateway's reply to it (one at a time per
    identity on this box: the broker gives an identity one connection), over
    ``link_maker``'s link: MQTT to ``cfg.host:cfg.port`` unless a test passes the in-memory
    broker's."""
    with _one_at_a_time(cfg, timeout):
        return _send_command(cfg, body, timeout=timeout, link_maker=link_maker)


def _send_command(cfg: DispatchConfig, body: dict[str, Any], *, timeout: float,
                  link_maker: LinkMaker) -> DispatchReplyMsg:
    topics = Topics(cfg.depot)
    command_id = f"cmd-{uuid.uuid4().hex[:16]}"
    replies: queue.Queue[bytes] = queue.Queue()
    link = link_maker(
        LinkSettings(host=cfg.host, port=cfg.port,
                     client_id=cfg.username
                     or f"crossdock-dispatch-{cfg.client}-{uuid.uuid4().hex[:6]}",
                     username=cfg.username, password=cfg.password, session_expiry_s=0),
        subscriptions=[topics.replies(cfg.client)],
        on_message=lambda _t, p: replies.put(p),
        log_problems=False,  # said below, in the command's one line
    )
    link.start()
    try:
        if not link.wait_connected(timeout):
            if link.refused.is_set():
                raise CommandError(f"broker at {cfg.host}:{cfg.port}: {link.problem} of "
                                   f"user {cfg.username or '(none)'} (dispatch.toml [broker])")
            raise CommandError(f"no broker at {cfg.host}:{cfg.port} within {timeout:g} s")
        now = _dt.datetime.now(_dt.UTC)
        msg = ENVELOPE.validate_python({
            "v": 1, "kind": "dispatch_command", "id": command_id, "origin": cfg.client,
            "hlc": f"{int(now.timestamp() * 1000):015d}-000000-{cfg.client}",
            "body": {**body, "client": cfg.client},
        })
        link.publish(topics.commands, encode(msg))
        deadline = _dt.datetime.now(_dt.UTC) + _dt.timedelta(seconds=timeout)
        while True:
            left = (deadline - _dt.datetime.now(_dt.UTC)).total_seconds()
            if left <= 0:
                raise CommandError(f"no reply from the gateway within {timeout:g} s "
                                   f"(command {command_id}; it is safe to send again)")
            try:
                payload = replies.get(timeout=left)
            except queue.Empty:
                continue
            try:
                reply = decode(payload)
            except CodecError:
                continue
            if isinstance(reply, DispatchReplyMsg) and reply.body.command_id == command_id:
                return reply
    finally:
        link.stop()


config_option = click.option(
    "--config", "config_path", type=click.Path(path_type=Path), default="dispatch.toml",
    show_default=True, help="dispatch.toml, or the gateway's gateway.toml.")


@click.group()
@config_option
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait for a reply.")
@click.option("--json", "as_json", is_flag=True, help="Print the reply as JSON.")
@click.pass_context
def dispatch(ctx: click.Context, config_path: Path, timeout: float, as_json: bool) -> None:
    """Commands to the gateway: assign, cancel, resolve, approve, reject."""
    ctx.obj = {"config": config_path, "timeout": timeout, "json": as_json}


def _send(ctx: click.Context, body: dict[str, Any]) -> None:
    cfg = load_dispatch_config(ctx.obj["config"])
    reply = send_command(cfg, body, timeout=ctx.obj["timeout"])
    if ctx.obj["json"]:
        click.echo(json.dumps(reply.body.model_dump(mode="json"), indent=2))
    elif reply.body.ok:
        detail = ", ".join(f"{k}={v}" for k, v in reply.body.detail.items())
        click.echo(f"ok: {body['action']}" + (f" ({detail})" if detail else ""))
    if not reply.body.ok:
        raise CommandError(f"refused: {reply.body.reason}")


@dispatch.command()
@click.argument("order")
@click.argument("driver")
@click.option("--override", is_flag=True,
              help="Claim and resolve in one: an audited override of what the sources say.")
@click.pass_context
def assign(ctx: click.Context, order: str, driver: str, override: bool) -> None:
    """Assign ORDER to DRIVER."""
    _send(ctx, {"action": "assign", "order_id": order, "driver": driver, "override": override})


@dispatch.command()
@click.argument("order")
@click.option("--reason", default="", help="Why (the customer cancelled, ...).")
@click.pass_context
def cancel(ctx: click.Context, order: str, reason: str) -> None:
    """Cancel ORDER."""
    _send(ctx, {"action": "cancel", "order_id": order, "reason": reason})


@dispatch.command()
@click.argument("order")
@click.argument("field")
@click.option("--choose", required=True, help="The source (or claim id) whose value wins.")
@click.pass_context
def resolve(ctx: click.Context, order: str, field: str, choose: str) -> None:
    """Resolve the conflict on ORDER's FIELD by choosing one candidate."""
    _send(ctx, {"action": "resolve", "order_id": order, "field": field, "choose": choose})


@dispatch.command()
@click.argument("proposal")
@click.pass_context
def approve(ctx: click.Context, proposal: str) -> None:
    """Approve an optimizer proposal held for approval."""
    _send(ctx, {"action": "approve", "proposal_id": proposal})


@dispatch.command()
@click.argument("proposal")
@click.pass_context
def reject(ctx: click.Context, proposal: str) -> None:
    """Reject an optimizer proposal held for approval."""
    _send(ctx, {"action": "reject", "proposal_id": proposal})
