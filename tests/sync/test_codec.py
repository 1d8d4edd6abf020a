"""The envelope codec: round trips, and CodecError (never anything else) on any bytes."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.codec import _diagnose, decode, encode
from sync.envelope import ENVELOPE, KINDS, AckMsg, DispatchCommandMsg, ViewChangeMsg, ViewChangesMsg
from sync.errors import CodecError
from sync.merge import merge_order
from sync.model import Policy
from tests.sync.factories import at, claim, stamp


def _view_change() -> ViewChangeMsg:
    view = merge_order(
        "X", [claim("L1", "legacy", "7"), claim("D1", "dispatch", "12", minute=5)], [],
        Policy(), at(6),
    )
    return ENVELOPE.validate_python(
        {"v": 1, "kind": "view_change", "id": "m1", "origin": "gateway", "hlc": stamp(6),
         "body": {"seq": 1, "order_id": "X", "view": view.model_dump(mode="json")}}
    )


def test_view_change_round_trips():
    msg = _view_change()
    assert decode(encode(msg)) == msg


def _batch(*seqs: int) -> dict[str, object]:
    view = _view_change().body.view
    assert view is not None
    return {"v": 1, "kind": "view_changes", "id": "b1", "origin": "gateway", "hlc": stamp(6),
            "body": {"entries": [{"seq": s, "order_id": "X", "view": view.model_dump(mode="json")}
                                 for s in seqs], "head": 9}}


def test_view_changes_round_trip():
    msg = ENVELOPE.validate_python(_batch(3, 4, 5))
    assert isinstance(msg, ViewChangesMsg)
    assert (msg.body.first, msg.body.last) == (3, 5)
    assert decode(encode(msg)) == msg


@pytest.mark.parametrize(("seqs", "where"), [((3, 5), "entries[1].seq is 5, expected 4"),
                                             ((), "body.entries")])
def test_view_changes_must_be_consecutive_and_not_empty(seqs, where):
    with pytest.raises(CodecError) as err:
        decode(json.dumps(_batch(*seqs)).encode())
    assert err.value.reason == "invalid"
    assert where in str(err.value)


def test_dispatch_command_is_discriminated_by_action():
    raw = {"v": 1, "kind": "dispatch_command", "id": "c1", "origin": "cli", "hlc": stamp(0),
           "body": {"action": "assign", "client": "anna", "order_id": "X", "driver": "12"}}
    msg = decode(json.dumps(raw).encode())
    assert isinstance(msg, DispatchCommandMsg)
    assert msg.body.action == "assign"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "not-json"),
        (b"\xff\xfe", "not-json"),
        (b"[1, 2]", "not-object"),
        (b'{"v": 2, "kind": "ack"}', "bad-version"),
        (b'{"v": true, "kind": "ack"}', "bad-version"),
        (b'{"v": 1, "kind": "teleport"}', "unknown-kind"),
        (b'{"v": 1, "kind": "ack", "id": "a", "origin": "g", "hlc": "h", "body": {}}', "invalid"),
        (b"[" * 100000 + b"]" * 100000, "not-json"),
    ],
)
def test_bad_payloads_are_refused_with_a_reason(payload, reason):
    with pytest.raises(CodecError) as err:
        decode(payload, max_bytes=10**7)
    assert err.value.reason == reason
    assert "\n" not in str(err.value)


def test_a_lone_surrogate_escape_is_refused_and_an_escaped_pair_kept():
    """A view holding "\\udfff" decoded fine and then crashed the agent writing its store
    (tests/security/test_fuzz_handlers); an escaped emoji is one character and stays."""
    ack = {"v": 1, "kind": "ack", "id": "a", "origin": "gw", "hlc": stamp(0),
           "body": {"event_ids": ["e1"]}}
    lone = json.dumps(ack).replace('"e1"', '"e1\\udfff"').encode()
    with pytest.raises(CodecError) as err:
        decode(lone)
    assert err.value.reason == "invalid"
    assert "lone UTF-16 surrogate" in str(err.value) and "\n" not in str(err.value)
    encoded = json.dumps(ack).encode().replace(b'"e1"', b'"e1\xed\xa0\x80"')  # its UTF-8 bytes
    with pytest.raises(CodecError) as err:
        decode(encoded)
    assert err.value.reason == "invalid"
    pair = json.dumps(ack).replace('"e1"', '"e1\\ud83d\\ude00"').encode()
    assert decode(pair).body.event_ids == ("e1\U0001f600",)  # type: ignore[union-attr]


def test_oversize_payload_is_refused_before_parsing():
    msg = AckMsg(v=1, kind="ack", id="a", origin="gw", hlc=stamp(0),
                 body={"event_ids": ["e" * 100] * 50})
    data = encode(msg)
    with pytest.raises(CodecError) as err:
        decode(data, max_bytes=len(data) - 1)
    assert err.value.reason == "too-large"
    assert decode(data, max_bytes=len(data)) == msg


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_codec_error(data):
    with contextlib.suppress(CodecError):
        decode(data)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=1000, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    body=_json,
    extra=st.dictionaries(st.sampled_from(["id", "origin", "hlc", "x"]), _json, max_size=3),
)
def test_envelope_shaped_junk_raises_only_codec_error(kind, body, extra):
    raw = {"v": 1, "kind": kind, "id": "i", "origin": "o", "hlc": "h", "body": body, **extra}
    try:
        decode(json.dumps(raw).encode())
    except CodecError as exc:
        assert exc.reason == "invalid"


def _outcome(fn, data):
    try:
        return fn(data)
    except CodecError as exc:
        return exc.reason


@settings(max_examples=1000, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    body=_json,
    v=st.sampled_from([1, 2, 1.0, True, "1", None]),
)
def test_the_one_pass_parser_agrees_with_the_step_by_step_decode(kind, body, v):
    """``decode`` takes pydantic-core's JSON parser first; on anything it accepts or refuses,
    the outcome is the step-by-step decode's (the same envelope, or the same reason)."""
    for data in (json.dumps({"v": v, "kind": kind, "id": "i", "origin": "o", "hlc": "h",
                             "body": body}).encode(),
                 encode(_view_change()), json.dumps(_batch(1, 2)).encode()):
        assert _outcome(decode, data) == _outcome(_diagnose, data)


@pytest.mark.parametrize("v", [True, 2, "1", None])
def test_a_valid_message_with_a_wrong_version_is_refused_by_both_paths(v):
    for raw in (json.loads(encode(_view_change())), _batch(1, 2)):
        data = json.dumps({**raw, "v": v}).encode()
        assert _outcome(decode, data) == _outcome(_diagnose, data) == "bad-version"


def _ack(body: dict[str, object]) -> bytes:
    return json.dumps({"v": 1, "kind": "ack", "id": "a", "origin": "gateway", "hlc": stamp(1),
                       "body": body}).encode()


def test_an_ack_carries_applied_ids_refusals_with_reasons_or_both_but_never_neither() -> None:
    refused = decode(_ack({"refused": [{"event_id": "e1", "reason": "order X left the route"}]}))
    assert isinstance(refused, AckMsg)
    assert refused.body.event_ids == () and refused.body.refused[0].reason.startswith("order X")
    both = decode(_ack({"event_ids": ["e2"], "refused": [{"event_id": "e1", "reason": "no"}]}))
    assert isinstance(both, AckMsg) and both.body.event_ids == ("e2",)
    assert decode(encode(both)) == both
    with pytest.raises(CodecError):
        decode(_ack({}))
    with pytest.raises(CodecError):
        decode(_ack({"event_ids": [], "refused": []}))
    with pytest.raises(CodecError):  # a refusal says why
        decode(_ack({"refused": [{"event_id": "e1"}]}))


@pytest.mark.parametrize(("action", "dismisses", "ok"), [
    ("dismiss", "e1", True), ("dismiss", None, False), ("deliver", "e1", False),
    ("deliver", None, True)])
def test_dismisses_goes_with_dismiss_and_only_with_it(action: str, dismisses: str | None,
                                                      ok: bool) -> None:
    body: dict[str, object] = {"event_id": "d1", "order_id": "X", "action": action,
                               "at": at(1).isoformat()}
    if dismisses is not None:
        body["dismisses"] = dismisses
    payload = json.dumps({"v": 1, "kind": "driver_event", "id": "d1", "origin": "tab-7",
                          "hlc": stamp(1), "body": body}).encode()
    if ok:
        assert decode(payload).body.dismisses == dismisses  # type: ignore[union-attr]
    else:
        with pytest.raises(CodecError):
            decode(payload)
