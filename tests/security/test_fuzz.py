"""Hostile input, fuzzed: every gateway and agent message handler is fed arbitrary bytes,
valid JSON of the wrong types, huge strings, deep nesting, unicode edge cases and odd topics,
called directly (no broker): the gateway through ``GatewayService.receive`` (what its MQTT link
calls), the agent through its session handlers (what its MQTT session calls after decoding).

Each input must be a counted refusal (or, if it happens to be valid, handled), never a crash
(the gateway's ``worker_errors`` stays 0; nothing escapes the agent's handlers), never a
partial write (a refused input leaves the stored events, claims, route and seq as they were).
Each test prints how many examples ran and what became of them (``pytest -s``)."""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import AgentConfig
from agent.service import Agent
from agent.session import Incoming
from gateway.config import load_config
from gateway.errors import SourceError
from gateway.ingest.inspect import inspect_file
from gateway.setup import write_sample_config
from gateway.store.core import Store
from gateway.store.devices import DeviceStore
from gateway.streams.service import GatewayService
from sync.codec import DEFAULT_MAX_BYTES, decode
from sync.errors import CodecError
from sync.topics import Topics
from tests.broker import free_port

pytestmark = pytest.mark.slow

DEPOT = "fz"
TOPICS = Topics(DEPOT)
EXAMPLES = int(os.environ.get("CROSSDOCK_FUZZ_EXAMPLES", "1000"))
"""Examples per handler (``CROSSDOCK_FUZZ_EXAMPLES=5000`` for a longer run)."""
KINDS = ["view_change", "view_changes", "snapshot", "resync", "applied", "driver_event", "ack",
         "status", "dispatch_command", "dispatch_reply"]
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

# --- strategies -----------------------------------------------------------------------------

odd_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40)
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=False, allow_infinity=False), odd_text)
ids = st.one_of(st.from_regex(r"[A-Za-z0-9_.:-]{1,24}", fullmatch=True), odd_text)
ORDERS: list[str] = ["ORD-NOPE"]
"""The sample's order ids (filled in by the gateway fixture), so some events are on a route."""
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(odd_text, inner, max_size=5)), max_leaves=10)


def _envelope(kind: Any, body: Any, origin: Any, v: Any = 1, hlc: Any = None) -> dict[str, Any]:
    return {"v": v, "kind": kind, "id": "x-1", "origin": origin,
            "hlc": hlc if hlc is not None else "001795777200000-000000-x", "body": body}


@st.composite
def payloads(draw: st.DrawFn, origins: list[str]) -> bytes:
    """Raw bytes, wrong-typed JSON, envelopes with random bodies, huge or deep payloads."""
    choice = draw(st.integers(0, 6))
    if choice == 0:
        return draw(st.binary(max_size=300))
    if choice == 1:
        return json.dumps(draw(json_values)).encode()
    if choice == 2:  # an envelope of a real kind, a random body
        origin = draw(st.one_of(st.sampled_from(origins), odd_text))
        env = _envelope(draw(st.one_of(st.sampled_from(KINDS), odd_text)), draw(json_values),
                        origin, v=draw(st.one_of(st.just(1), scalars)),
                        hlc=draw(st.one_of(st.none(), odd_text)))
        return json.dumps(env, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if choice == 3:  # a driver event that is almost right (its topic: see ``messages``)
        body = {"event_id": draw(ids), "order_id": draw(st.one_of(st.sampled_from(ORDERS), ids)),
                "action": draw(st.one_of(st.sampled_from(["arrive", "deliver", "fail",
                                                          "resolve", "note"]), odd_text)),
                "at": draw(st.one_of(st.just("2026-12-01T08:00:00+00:00"), odd_text)),
                "note": draw(st.one_of(st.none(), odd_text)),
                "based_on": draw(st.lists(odd_text, max_size=3)),
                "field": draw(st.one_of(st.none(), odd_text)),
                "choose": draw(st.one_of(st.none(), odd_text))}
        env = _envelope("driver_event", body, draw(st.sampled_from(origins)))
        return json.dumps(env, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if choice == 4:  # huge: just under and over the limit
        size = draw(st.sampled_from([DEFAULT_MAX_BYTES - 200, DEFAULT_MAX_BYTES + 1, 3 << 20]))
        env = _envelope("status", {"note": "x" * size}, draw(st.sampled_from(origins)))
        return json.dumps(env).encode()
    if choice == 5:  # deep nesting
        depth = draw(st.integers(10, 200_000))
        return b'{"v":1,"kind":"status","body":' + b"[" * depth + b"]" * depth + b"}"
    # valid JSON with lone surrogates escaped (\ud800) in free text: legal JSON, and then?
    text = draw(st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
                        min_size=1, max_size=4))
    body = {"event_id": draw(ids), "order_id": draw(st.sampled_from(ORDERS)),
            "action": "fail", "reason": text, "note": text, "at": "2026-12-01T08:00:00+00:00"}
    return json.dumps(_envelope("driver_event", body, draw(st.sampled_from(origins)))).encode()


@st.composite
def messages(draw: st.DrawFn, devices: list[str], origins: list[str]) -> tuple[str, bytes]:
    """(topic, payload): a payload on a random (often odd) topic, or on its origin's own
    outbox, where it passes the broker's ACL and reaches the gateway's checks."""
    payload = draw(payloads(origins))
    if draw(st.booleans()):
        return draw(topics(devices)), payload
    return TOPICS.outbox(draw(st.sampled_from(devices))), payload


def topics(devices: list[str]) -> st.SearchStrategy[str]:
    real = [t for d in devices for t in (TOPICS.outbox(d), TOPICS.device_status(d))]
    odd = [TOPICS.commands, TOPICS.root + "/devices//outbox", TOPICS.outbox("nobody"),
           TOPICS.outbox(devices[0]) + "/extra", "crossdock/v1/other/devices/tab-a/outbox",
           TOPICS.inbox(devices[0]), TOPICS.gateway_status, "#", "+/+", ""]
    return st.one_of(st.sampled_from(real + odd), odd_text.map(lambda t: TOPICS.root + "/" + t))


# --- the gateway ------------------------------------------------------------------------------

REFUSALS = ("bad_messages", "unauthorized_messages", "refused_events", "duplicate_events",
            "refused_commands", "revoked_messages")
CONTENT = ("events", "claim_sets", "resolutions", "devices", "writeback", "commands", "views")


class Gateway:
    def __init__(self, root: Path) -> None:
        write_sample_config(root, drivers=2, orders=8, seed=3, depot=DEPOT, port=free_port(),
                            now=dt.datetime.now(dt.UTC))
        self.cfg = load_config(root / "gateway.toml")
        with Store(self.cfg.db_path) as store:
            ingest = [s.name for s in self.cfg.sources]
            assert ingest
            from gateway.ingest.pipeline import ingest_source

            ingest_source(store, self.cfg, self.cfg.sources[0], now=lambda: dt.datetime.now(dt.UTC))
            with store.transaction():
                DeviceStore(store).add("tab-a", "DRV-001", "pw", dt.datetime.now(dt.UTC))
            ORDERS[:] = [*DeviceStore(store).route("DRV-001")[:3], "ORD-NOPE"]
        # a broker that is not there: acks and replies wait in paho's queue, unsent
        # no event rate limit here: a held event handled during a later example would blur
        # which input wrote what (the limit has its own test, test_limits.py)
        self.service = GatewayService(self.cfg, host="127.0.0.1", port=free_port(),
                                      status_interval_s=3600, event_rate=1e9,
                                      event_burst=10**9)
        self.service.start()
        # the service merges what the ingest left dirty once it settles: wait until the
        # stored rows hold still, so each example's before/after sees only its own writes
        seen: list[dict[str, int]] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (len(seen) < 5 or any(r != seen[-1]
                                                                     for r in seen[-5:])):
            seen.append(self.state()[1])
            time.sleep(0.2)

    def state(self) -> tuple[dict[str, int], dict[str, int]]:
        def read(store: Store) -> tuple[dict[str, int], dict[str, int]]:
            rows = {t: int(store.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
                    for t in CONTENT}
            return DeviceStore(store).counters(), rows

        result: tuple[dict[str, int], dict[str, int]] = self.service.call(read)
        return result


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = Gateway(tmp_path_factory.mktemp("fuzz-gw"))
    try:
        yield gw
    finally:
        gw.service.stop()


def _report(name: str, seen: collections.Counter[str]) -> None:
    print(f"\n{name}: {sum(seen.values())} examples: "
          + ", ".join(f"{k} {v}" for k, v in sorted(seen.items())))


def test_gateway_message_handler_refuses_hostile_input_without_crash_or_partial_write(
        gateway: Gateway) -> None:
    seen: collections.Counter[str] = collections.Counter()

    @FUZZ
    @given(message=messages(["tab-a", "tab-b"], ["tab-a", "tab-b", "gateway"]))
    def run(message: tuple[str, bytes]) -> None:
        topic, payload = message
        before, rows_before = gateway.state()
        gateway.service.receive(topic, payload)
        after, rows_after = gateway.state()
        assert after.get("worker_errors", 0) == 0, (topic, payload[:200])
        try:
            decode(payload)
        except CodecError as exc:
            if payload:  # an empty payload is a cleared retained message: ignored
                assert after.get("bad_messages", 0) == before.get("bad_messages", 0) + 1
                assert rows_after == rows_before, (topic, payload[:200])  # nothing written
            seen[f"codec:{exc.reason}" if payload else "empty"] += 1
            return
        refused = [n for n in REFUSALS if after.get(n, 0) > before.get(n, 0)]
        grew = {t for t in CONTENT if rows_after[t] != rows_before[t]}
        if refused:
            assert grew <= {"events", "commands"}, (grew, topic, payload[:200])  # the record
            seen[f"refused:{refused[0]}"] += 1
        elif after.get("driver_events", 0) > before.get("driver_events", 0):
            seen["applied:driver_event"] += 1  # on the route, as its own device: a real event
        else:
            assert not grew - {"views"}, (grew, topic, payload[:200])
            seen["handled"] += 1

    run()
    _report("gateway GatewayService.receive", seen)
    assert seen["handled"] + sum(v for k, v in seen.items() if k != "handled") >= EXAMPLES


# --- the agent --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    root = tmp_path_factory.mktemp("fuzz-agent")
    config = AgentConfig.model_validate({
        "depot": DEPOT, "device": "tab-a", "driver": "DRV-001", "db": str(root / "a.sqlite"),
        "broker": {"host": "127.0.0.1", "port": 1}})
    tablet = Agent(config)  # never started: no broker, handlers called directly
    try:
        yield tablet
    finally:
        tablet.stop()


def _agent_state(tablet: Agent) -> tuple[Any, ...]:
    status = tablet.sync_status()
    return (status.last_seq, tuple(s.order_id for s in tablet.route()),
            tuple(i.event_id for i in tablet.pending()))


def test_agent_session_handlers_refuse_hostile_input_without_crash_or_partial_write(
        agent: Agent) -> None:
    seen: collections.Counter[str] = collections.Counter()
    agent_topics = st.one_of(st.sampled_from([TOPICS.inbox("tab-a"), TOPICS.acks("tab-a"),
                                              TOPICS.gateway_status, TOPICS.inbox("tab-b"),
                                              TOPICS.outbox("tab-a"), "", "#"]),
                             odd_text.map(lambda t: TOPICS.root + "/" + t))

    @FUZZ
    @given(topic=agent_topics, payload=payloads(["gateway", "tab-a"]))
    def run(topic: str, payload: bytes) -> None:
        before = _agent_state(agent)
        counters = dict(agent.sync_status().counters)
        try:  # what agent.session.MqttSession does with each paho message
            envelope = decode(payload)
        except CodecError as exc:
            agent.session_bad_message(topic, exc)
            after = dict(agent.sync_status().counters)
            assert after.get("codec_errors", 0) == counters.get("codec_errors", 0) + 1
            assert _agent_state(agent) == before
            seen[f"codec:{exc.reason}"] += 1
            return
        agent.session_message(Incoming(topic, envelope))
        after = dict(agent.sync_status().counters)
        moved = [k for k in ("unexpected", "duplicates", "gaps")
                 if after.get(k, 0) > counters.get(k, 0)]
        if moved:
            assert _agent_state(agent)[1:] == before[1:]  # route and outbox as they were
            seen[f"refused:{moved[0]}"] += 1
        else:
            seen[f"handled:{envelope.kind}"] += 1

    run()
    _report("agent session_message/session_bad_message", seen)


# --- inspect: corrupted and truncated exports ---------------------------------------------------

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "dbf-public"
CSV = (b"ORDER_ID;DRIVER_ID;STATUS;ETA\r\nORD-1;DRV-001;PLANNED;2026-12-01 08:00\r\n"
       b'ORD-2;DRV-002;"Versp\xe4tet";2026-12-01 09:30\r\n')  # cp1252, as FoxPro writes
EXPORTS = {"orders.csv": CSV, **{p.name: p.read_bytes() for p in sorted(FIXTURES.iterdir())
                                 if p.suffix.lower() in (".dbf", ".fpt", ".dbt")}}
"""Each export a byte-level fuzz starts from (the public DBF fixtures with their memo files,
and a CSV drop)."""


Edit = tuple[int, int, int, bytes]
"""(how, where, n, data): 0 truncate at ``where``, 1 overwrite the byte at ``where`` with
``n``, 2 insert ``data`` at ``where``, 3 cut ``n`` bytes at ``where`` (``where`` taken modulo
the file's length: the repr of a failing example stays small)."""


@st.composite
def corrupted(draw: st.DrawFn) -> tuple[str, str, tuple[Edit, ...]]:
    """(the table, the file of it or beside it that is corrupted, the edits)."""
    names = [n for n in EXPORTS if n.lower().endswith((".dbf", ".csv"))]
    name = draw(st.sampled_from(names))
    files = sorted(n for n in EXPORTS if n.rsplit(".", 1)[0] == name.rsplit(".", 1)[0])
    edits = draw(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1 << 20),
                                    st.integers(0, 255), st.binary(min_size=1, max_size=16)),
                          min_size=1, max_size=4))
    return name, draw(st.sampled_from(files)), tuple(edits)


def _apply(data: bytes, edits: tuple[Edit, ...]) -> bytes:
    out = bytearray(data)
    for how, where, n, insert in edits:
        at = where % (len(out) + 1)
        if how == 0:
            del out[at:]
        elif how == 1 and at < len(out):
            out[at] = n
        elif how == 2:
            out[at:at] = insert
        else:
            del out[at:at + n + 1]
    return bytes(out)


def test_inspect_of_a_corrupted_or_truncated_export_is_a_typed_error_or_a_result(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    seen: collections.Counter[str] = collections.Counter()
    root = tmp_path_factory.mktemp("fuzz-inspect")

    @FUZZ
    @given(case=corrupted(), encoding=st.sampled_from([None, "cp1252", "cp1251", "utf-8"]))
    def run(case: tuple[str, str, tuple[Edit, ...]], encoding: str | None) -> None:
        name, target, edits = case
        for old in root.iterdir():
            old.unlink()
        for file, content in EXPORTS.items():
            if file.rsplit(".", 1)[0] == name.rsplit(".", 1)[0]:
                (root / file).write_bytes(_apply(content, edits) if file == target else content)
        try:
            found = inspect_file(root / name, encoding=encoding)
        except SourceError as exc:
            assert "\n" not in str(exc)
            seen["SourceError"] += 1
            return
        json.dumps(found)  # what --json prints
        seen["described"] += 1

    run()
    _report("inspect_file (DBF/FPT/DBT/CSV, byte-level)", seen)
