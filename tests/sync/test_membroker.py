"""The in-memory broker core: topic filters, sessions, QoS 1 redelivery, retained messages,
wills, the ACL (the one ``render_acl`` generates), queue limits, crashes and faults."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from gateway.broker.conf import BrokerUser, render_acl
from sync.membroker import Acl, Chaos, MemBroker, Message, matches
from sync.topics import Topics

T = Topics("d1")


@pytest.mark.parametrize(("topic_filter", "topic", "hit"), [
    ("a/b/c", "a/b/c", True),
    ("a/b/c", "a/b", False),
    ("a/+/c", "a/x/c", True),
    ("a/+/c", "a/x/y/c", False),
    ("a/+", "a/", True),  # an empty level is a level
    ("a/#", "a", True),  # '#' includes the parent level
    ("a/#", "a/b/c", True),
    ("#", "a/b", True),
    ("+/+", "a/b", True),
    ("+", "a/b", False),
    ("#", "$SYS/x", False),  # wildcards at the start never match $ topics
    ("crossdock/v1/d1/devices/+/outbox", "crossdock/v1/d1/devices/tab-1/outbox", True),
    ("crossdock/v1/d1/devices/+/outbox", "crossdock/v1/d1/devices/tab-1/inbox", False),
])
def test_topic_filters_match_as_mqtt_says(topic_filter: str, topic: str, hit: bool) -> None:
    assert matches(topic_filter, topic) is hit


@given(st.lists(st.sampled_from(["a", "b", ""]), min_size=1, max_size=5))
def test_a_topic_matches_itself_and_hash(levels: list[str]) -> None:
    topic = "/".join(levels)
    assert matches(topic, topic)
    assert matches("#", topic)
    assert matches("/".join("+" for _ in levels), topic)


def _online(broker: MemBroker, client_id: str, *filters: str, now: float = 0.0,
            **kw: object) -> int:
    conn, _present = broker.connect(client_id, now=now, **kw)  # type: ignore[arg-type]
    for f in filters:
        broker.subscribe(client_id, f)
    return conn


def _payloads(broker: MemBroker, client_id: str, *, ack: bool = True) -> list[bytes]:
    out = []
    for d in broker.take(client_id):
        out.append(d.message.payload)
        if ack:
            broker.ack(client_id, d.packet_id)
    return out


def test_a_message_reaches_every_matching_subscriber_once_in_order() -> None:
    broker = MemBroker()
    _online(broker, "gw", T.all_outboxes)
    _online(broker, "probe", "#")
    _online(broker, "other", T.inbox("tab-1"))
    _online(broker, "tab-1")
    for n in range(3):
        broker.publish("tab-1", Message(T.outbox("tab-1"), b"%d" % n))
    assert _payloads(broker, "gw") == [b"0", b"1", b"2"]
    assert _payloads(broker, "probe") == [b"0", b"1", b"2"]
    assert _payloads(broker, "other") == []


def test_an_unacked_delivery_comes_again_marked_dup_when_the_session_reconnects() -> None:
    broker = MemBroker()
    conn = _online(broker, "tab", "t", session_expiry_s=60, clean_start=False)
    _online(broker, "src")
    broker.publish("src", Message("t", b"x"))
    broker.publish("src", Message("t", b"y"))
    first, _second = broker.take("tab")
    broker.ack("tab", first.packet_id)  # y is handled but never acked: the link died
    broker.disconnect("tab", conn, now=1.0, graceful=False)
    _conn, present = broker.connect("tab", now=2.0, clean_start=False, session_expiry_s=60)
    assert present
    [again] = broker.take("tab")
    assert (again.message.payload, again.dup) == (b"y", True)
    assert broker.stats["redelivered"] == 1


def test_a_kept_session_queues_while_away_and_expires_after_its_interval() -> None:
    broker = MemBroker()
    conn = _online(broker, "tab", "t", session_expiry_s=60, clean_start=False)
    _online(broker, "src")
    broker.disconnect("tab", conn, now=10.0)
    broker.publish("src", Message("t", b"while away"))
    _conn, present = broker.connect("tab", now=20.0, clean_start=False, session_expiry_s=60)
    assert present and _payloads(broker, "tab") == [b"while away"]
    conn = _conn
    broker.disconnect("tab", conn, now=30.0)
    broker.publish("src", Message("t", b"lost with the session"))
    _conn, present = broker.connect("tab", now=91.0, clean_start=False, session_expiry_s=60)
    assert not present and _payloads(broker, "tab") == []


def test_clean_start_forgets_the_session() -> None:
    broker = MemBroker()
    conn = _online(broker, "tab", "t", session_expiry_s=60)
    _online(broker, "src")
    broker.disconnect("tab", conn, now=1.0)
    broker.publish("src", Message("t", b"x"))
    _conn, present = broker.connect("tab", now=2.0, clean_start=True)
    assert not present and _payloads(broker, "tab") == []


def test_retained_messages_go_to_each_new_subscriber_and_an_empty_one_clears() -> None:
    broker = MemBroker()
    _online(broker, "gw")
    broker.publish("gw", Message(T.gateway_status, b"up", retain=True))
    _online(broker, "a", T.gateway_status)
    [delivery] = broker.take("a")
    assert delivery.message.payload == b"up"
    broker.publish("gw", Message(T.gateway_status, b"", retain=True))
    _online(broker, "b", T.gateway_status)
    assert _payloads(broker, "b") == []
    assert broker.retained == {}


def test_a_will_goes_out_when_the_connection_dies_not_on_a_clean_disconnect() -> None:
    broker = MemBroker()
    _online(broker, "gw", T.all_device_status)
    will = Message(T.device_status("tab-1"), b"offline", retain=True)
    conn = _online(broker, "tab-1", will=will)
    broker.disconnect("tab-1", conn, now=1.0, graceful=True)
    assert _payloads(broker, "gw") == []
    conn = _online(broker, "tab-1", will=will)
    broker.disconnect("tab-1", conn, now=2.0, graceful=False)
    assert _payloads(broker, "gw") == [b"offline"]
    assert broker.retained[T.device_status("tab-1")].payload == b"offline"


def test_a_second_connection_under_the_same_id_takes_over_and_fires_the_first_will() -> None:
    broker = MemBroker()
    _online(broker, "watch", "status")
    first = _online(broker, "tab", will=Message("status", b"gone"))
    second = _online(broker, "tab")
    assert not broker.connected("tab", first) and broker.connected("tab", second)
    assert _payloads(broker, "watch") == [b"gone"]


def _acl() -> Acl:
    users = [
        BrokerUser(username="gw", password=SecretStr("p"), role="gateway"),
        BrokerUser(username="anna", password=SecretStr("p"), role="dispatch"),
        BrokerUser(username="u-tab-1", password=SecretStr("p"), role="device", device="tab-1"),
        BrokerUser(username="u-tab-2", password=SecretStr("p"), role="device", device="tab-2"),
    ]
    return Acl.parse(render_acl(users, "d1"))


def test_the_generated_acl_lets_a_tablet_use_only_its_own_topics() -> None:
    acl = _acl()
    assert acl.allows("u-tab-1", T.outbox("tab-1"), "write")
    assert acl.allows("u-tab-1", T.inbox("tab-1"), "read")
    assert acl.allows("u-tab-1", T.gateway_status, "read")
    assert not acl.allows("u-tab-1", T.outbox("tab-2"), "write")
    assert not acl.allows("u-tab-1", T.inbox("tab-2"), "read")
    assert not acl.allows("u-tab-1", T.inbox("tab-1"), "write")
    assert not acl.allows("u-tab-1", T.commands, "write")
    assert acl.allows("anna", T.commands, "write")
    assert acl.allows("gw", T.inbox("tab-2"), "write")
    assert not acl.allows(None, T.commands, "write")  # anonymous: nothing


def test_the_broker_drops_what_the_acl_denies_silently() -> None:
    broker = MemBroker(acl=_acl())
    _online(broker, "gw-client", T.all_outboxes, username="gw")
    _online(broker, "tab-1", T.inbox("tab-2"), username="u-tab-1")  # granted, never fed
    assert broker.publish("tab-1", Message(T.outbox("tab-1"), b"mine"))
    assert not broker.publish("tab-1", Message(T.outbox("tab-2"), b"forged"))
    broker.publish("gw-client", Message(T.inbox("tab-2"), b"not for tab-1"))
    assert _payloads(broker, "gw-client") == [b"mine"]
    assert _payloads(broker, "tab-1") == []
    assert broker.stats["denied_publish"] == 1 and broker.stats["denied_read"] == 1


def test_an_acl_line_it_cannot_read_is_named() -> None:
    with pytest.raises(ValueError, match="acl line 2"):
        Acl.parse("user a\npattern read x/%c\n")


def test_past_in_flight_and_queue_limits_messages_are_dropped_and_counted() -> None:
    broker = MemBroker(max_inflight=2, max_queued=3)
    _online(broker, "tab", "t")
    _online(broker, "src")
    for n in range(8):
        broker.publish("src", Message("t", b"%d" % n))
    assert broker.stats["dropped_queue_full"] == 3  # 2 in flight + 3 queued are kept
    got = [d.message.payload for d in broker.take("tab")]
    assert got == [b"0", b"1"]  # no more while two are in flight
    assert broker.take("tab") == []


def test_a_crash_loses_queued_and_in_flight_messages_but_keeps_sessions_and_retained() -> None:
    broker = MemBroker()
    conn = _online(broker, "tab", "t", session_expiry_s=60, clean_start=False)
    _online(broker, "src")
    broker.publish("src", Message("keep", b"r", retain=True))
    broker.publish("src", Message("t", b"in flight"))
    broker.take("tab")
    broker.disconnect("tab", conn, now=1.0)  # away; then one more is queued for it
    broker.publish("src", Message("t", b"queued"))
    broker.crash(now=2.0)
    assert broker.stats["lost_in_crash"] == 2
    assert not broker.connected("src", 2)
    _conn, present = broker.connect("tab", now=3.0, clean_start=False, session_expiry_s=60)
    assert present and broker.take("tab") == []
    assert "keep" in broker.retained


def test_drop_next_loses_exactly_the_next_matching_messages() -> None:
    broker = MemBroker()
    _online(broker, "tab", "#")
    _online(broker, "src")
    broker.drop_next("a/+", 2)
    for topic in ("b/1", "a/1", "a/2", "a/3"):
        broker.publish("src", Message(topic, topic.encode()))
    assert _payloads(broker, "tab") == [b"b/1", b"a/3"]
    assert broker.stats["dropped_by_fault"] == 2


def _chaos_run(seed: int) -> tuple[list[bytes], dict[str, int]]:
    broker = MemBroker(chaos=Chaos(random.Random(seed), drop=0.2, duplicate=0.2, reorder=0.2))
    _online(broker, "tab", "t")
    _online(broker, "src")
    got: list[bytes] = []
    for n in range(50):
        broker.publish("src", Message("t", b"%d" % n))
        got.extend(_payloads(broker, "tab"))
    return got, dict(broker.stats)


def test_chaos_from_a_seed_is_the_same_every_run_and_does_each_fault() -> None:
    got, stats = _chaos_run(7)
    assert (got, stats) == _chaos_run(7)
    assert got != _chaos_run(8)[0]
    assert stats["dropped_by_fault"] and stats["duplicated"] and stats["reordered"]
    numbers = [int(p) for p in got]
    assert numbers != sorted(numbers)  # something came out of order
    assert len(numbers) != len(set(numbers))  # something came twice
    assert len(set(numbers)) < 50  # something was lost
