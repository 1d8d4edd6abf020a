"""Hostile input through the in-memory link: every gateway and agent message handler.

A gateway (``GatewayService`` on ``tests.memnet``'s link, its store on the ``gateway sample``
depot, ingested and merged) and a tablet (``Agent`` on the same network's transport, with a
route and an outbox) each take thousands of hostile messages (``tests.security.fuzzing``) as a
broken or malicious client sends them: published on the in-memory broker on a topic the
handler subscribes to (odd device names included: ``+`` matches any), or, for topics no
broker would deliver, handed to the handler as a broker not ours might.

Each example must be

* never a crash: no worker error, no failed command, nothing logged with a traceback;
* a counted refusal unless it is a message the handler takes on that topic: a payload that
  does not decode is ``bad_messages`` (gateway) / ``codec_errors`` (agent), one more each time;
  a message on the wrong topic, from the wrong origin, of the wrong kind, for a device not
  registered or revoked, is a refusal counter one up;
* never a partial write: after a refusal every table but the counters and the refusal's own
  record (an event or command row saying "refused") is byte for byte as before.

``pytest -s`` prints examples, seconds and outcomes per handler (profiles: ``fuzzing.py``)."""

from __future__ import annotations

import collections

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.codec import decode
from sync.errors import CodecError
from tests.security.fuzzing import EXAMPLES, FUZZ, messages, odd_text, reported
from tests.security.memdepot import (
    RECORDS,
    REFUSALS,
    TOPICS,
    FuzzGateway,
    FuzzTablet,
    Tracebacks,
)

pytestmark = pytest.mark.slow


def _gateway_topics(devices: list[str]) -> st.SearchStrategy[str]:
    own = [t for d in devices for t in (TOPICS.outbox(d), TOPICS.device_status(d))]
    odd = [TOPICS.commands, TOPICS.root + "/devices//outbox", TOPICS.outbox("nobody"),
           TOPICS.outbox(devices[0]) + "/extra", "crossdock/v1/other/devices/tab-a/outbox",
           TOPICS.inbox(devices[0]), TOPICS.gateway_status, "#", "+/+", "", "$SYS/x"]
    return st.one_of(st.sampled_from(own), st.sampled_from(odd),
                     odd_text.map(lambda d: f"{TOPICS.root}/devices/{d}/outbox"),
                     odd_text.map(lambda d: f"{TOPICS.root}/devices/{d}/status"),
                     odd_text.map(lambda t: TOPICS.root + "/" + t))


def _gateway_takes(topic: str, kind: str, origin: str) -> bool:
    """Is this a message the gateway takes (handled, not a refusal) on this topic?"""
    if topic == TOPICS.commands:
        return kind == "dispatch_command"
    device = TOPICS.device_of(topic)
    if device not in ("tab-a", "tab-b") or origin != device:
        return False
    if topic == TOPICS.device_status(device):
        return kind == "status"
    return topic == TOPICS.outbox(device) and kind in ("driver_event", "resync", "applied")


def test_gateway_handler_refuses_hostile_input_counted_without_crash_or_partial_write(
        gateway: FuzzGateway, tracebacks: Tracebacks) -> None:
    seen: collections.Counter[str] = collections.Counter()
    kinds = ["driver_event", "resync", "applied", "status", "dispatch_command", "ack"]

    @FUZZ
    @given(message=messages(gateway.seeds(), kinds, _gateway_topics(["tab-a", "tab-b"])))
    def run(message: tuple[str, bytes]) -> None:
        topic, payload = message
        before, rows_before = gateway.state()
        path = gateway.send(topic, payload)
        after, rows_after = gateway.state()
        where = (topic, payload[:300])
        crashed, tracebacks.seen[:] = tracebacks.seen[:], []
        assert not crashed, (where, crashed[:1])
        for crash in ("worker_errors", "failed_commands"):
            assert after.get(crash, 0) == before.get(crash, 0), where
        kept = {t for t in rows_before if t not in RECORDS and rows_before[t] != rows_after[t]}
        if not payload:  # an empty payload clears a retained message: ignored
            assert (after, rows_after) == (before, rows_before), where
            seen["empty"] += 1
            return
        try:
            env = decode(payload)
        except CodecError as exc:
            assert after.get("bad_messages", 0) == before.get("bad_messages", 0) + 1, where
            assert rows_after == rows_before, where  # nothing at all written
            seen[f"{path}:codec:{exc.reason}"] += 1
            return
        refused = [n for n in REFUSALS if after.get(n, 0) > before.get(n, 0)]
        if refused:
            assert not kept, (kept, where)  # only the counters and the refusal's record
            seen[f"{path}:refused:{refused[0]}"] += 1
            return
        assert _gateway_takes(topic, env.kind, env.origin), ("an uncounted refusal", where)
        seen[f"{path}:handled:{env.kind}"] += 1

    with reported("gateway GatewayService (in-memory link)", seen):
        run()
    assert sum(seen.values()) >= EXAMPLES
    assert seen.keys() & {"broker:handled:driver_event", "broker:refused:refused_events"}


# --- the agent --------------------------------------------------------------------------------


AGENT_TAKES = {TOPICS.inbox("tab-a"): ("view_change", "view_changes", "snapshot"),
               TOPICS.acks("tab-a"): ("ack",), TOPICS.gateway_status: ("status",)}
"""What the agent handles (not a refusal) on each topic."""


def test_agent_handlers_refuse_hostile_input_counted_without_crash_or_partial_write(
        tablet: FuzzTablet, tracebacks: Tracebacks) -> None:
    seen: collections.Counter[str] = collections.Counter()
    own = [TOPICS.inbox("tab-a"), TOPICS.acks("tab-a"), TOPICS.gateway_status]
    topics = st.one_of(st.sampled_from(own), st.sampled_from(own), st.sampled_from(
        [TOPICS.inbox("tab-b"), TOPICS.outbox("tab-a"), "", "#", TOPICS.inbox("tab-a") + "/x"]),
        odd_text.map(lambda t: TOPICS.root + "/" + t))
    kinds = ["view_change", "view_changes", "snapshot", "ack", "status", "dispatch_reply"]

    @FUZZ
    @given(message=messages(tablet.seeds(), kinds, topics))
    def run(message: tuple[str, bytes]) -> None:
        topic, payload = message
        before, rows_before = tablet.state()
        path = tablet.send(topic, payload)
        after, rows_after = tablet.state()
        where = (topic, payload[:300])
        crashed, tracebacks.seen[:] = tracebacks.seen[:], []
        assert not crashed, (where, crashed[:1])
        try:
            env = decode(payload)
        except CodecError as exc:
            assert after.get("codec_errors", 0) == before.get("codec_errors", 0) + 1, where
            assert rows_after == rows_before, where
            seen[f"{path}:codec:{exc.reason}"] += 1
            return
        moved = [k for k in ("unexpected", "duplicates", "gaps")
                 if after.get(k, 0) > before.get(k, 0)]
        if moved:
            assert rows_after == rows_before, where  # route, outbox, refusals, seq kept
            seen[f"{path}:refused:{moved[0]}"] += 1
            return
        assert env.kind in AGENT_TAKES.get(topic, ()), ("an uncounted refusal", where)
        seen[f"{path}:handled:{env.kind}"] += 1

    with reported("agent session handlers (in-memory transport)", seen):
        run()
    assert sum(seen.values()) >= EXAMPLES
