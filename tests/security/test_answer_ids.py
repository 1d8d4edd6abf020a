"""Answers to ids at their length limit, found by the handler fuzz (test_fuzz_handlers.py): an
event or command id may be 128 characters, and the gateway's answer to it must still be a
valid message. Through the in-memory link, as the fuzz found them."""

from __future__ import annotations

import json

from tests.security.fuzzing import envelope
from tests.security.memdepot import AT, HLC, TOPICS, FuzzGateway


def test_an_event_id_at_the_length_limit_is_acked(gateway: FuzzGateway) -> None:
    """Found by the fuzz: an event id of 128 characters (the limit) made an ack id of 132
    ("ack-" + id), over the envelope's limit: the worker failed after storing the event, and
    every resend failed the same way, so the tablet's outbox never emptied."""
    event_id = "e" * 128
    with gateway.net.probe("tab-a-acks") as acks:
        acks.subscribe(TOPICS.acks("tab-a"))
        body = {"event_id": event_id, "order_id": gateway.route[0], "action": "note",
                "at": AT, "note": "long id"}
        for _attempt in range(2):  # the first send, and a resend (a duplicate) are both acked
            before, _rows = gateway.state()
            gateway.send(TOPICS.outbox("tab-a"), json.dumps(
                envelope("driver_event", body, "tab-a", HLC)).encode())
            counters, _rows = gateway.state()
            assert counters.get("worker_errors", 0) == before.get("worker_errors", 0)
            ack = acks.get(timeout=10)
            assert ack is not None, "no ack"
            assert json.loads(ack.payload)["body"]["event_ids"] == [event_id]


def test_a_command_id_at_the_length_limit_is_answered(gateway: FuzzGateway) -> None:
    """Found by the fuzz: a command id of 128 characters made a reply id of 134: the command
    was rolled back and counted as failed, and the reply without the store failed too."""
    command_id = "c" * 128
    with gateway.net.probe("dispatch-replies") as replies:
        replies.subscribe(TOPICS.replies("dispatch"))
        cmd = envelope("dispatch_command", {"client": "dispatch", "action": "cancel",
                                            "order_id": "ORD-NOPE"}, "dispatch", HLC)
        before, _rows = gateway.state()
        gateway.send(TOPICS.commands, json.dumps({**cmd, "id": command_id}).encode())
        counters, _rows = gateway.state()
        for crash in ("worker_errors", "failed_commands"):
            assert counters.get(crash, 0) == before.get(crash, 0), crash
        reply = replies.get(timeout=10)
        assert reply is not None, "no reply"
        body = json.loads(reply.payload)["body"]
        assert (body["command_id"], body["ok"]) == (command_id, False)
        assert "unknown order ORD-NOPE" in body["reason"]
