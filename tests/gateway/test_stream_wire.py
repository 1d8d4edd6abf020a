"""Stream messages composed around stored bodies are the messages ``sync.codec.encode`` makes."""

from __future__ import annotations

from gateway.store.devices import Entry
from gateway.streams.wire import batches, snapshot_bytes, view_change_bytes, view_changes_bytes
from sync.codec import decode, encode
from sync.envelope import (
    Snapshot,
    SnapshotMsg,
    ViewChange,
    ViewChangeMsg,
    ViewChanges,
    ViewChangesMsg,
)
from sync.merge import merge
from sync.model import OrderView, Policy
from sync.rules import check_route, with_warnings
from tests.sync.factories import at, claim

HLC = "001795830400000-000007-gateway"
ODD_ID = 'ord "7"\\é\n'  # quotes, a backslash, non-ASCII and a control character


def _views() -> list[OrderView]:
    claims = [
        claim("a-d", "legacy", "7", order_id="A"),
        claim("a-e", "legacy", at(0).isoformat(), order_id="A", field="eta"),
        claim("b-d", "legacy", "7", order_id=ODD_ID),
        claim("b-e", "legacy", at(11 * 60).isoformat(), order_id=ODD_ID, field="eta"),
        claim("b-x", "dispatch", "12", order_id=ODD_ID, minute=1),  # a conflict
    ]
    views = list(merge(claims, [], Policy(), at(2)).views.values())
    return with_warnings(views, check_route(views, Policy()))  # one has a warning


def _stored(view: OrderView) -> str:
    return view.model_dump_json(exclude_defaults=True)  # as Store.put_views stores it


def test_view_change_bytes_decode_to_the_encoded_envelope():
    views = _views()
    assert any(v.warnings for v in views) and any(v.conflicts() for v in views)
    cases = [(v.order_id, v) for v in views] + [(ODD_ID, None), ("A", None)]
    for seq, (order_id, view) in enumerate(cases, start=1):
        for head in (None, seq + 3):
            entry = Entry(seq, order_id, None if view is None else _stored(view))
            composed = view_change_bytes("tab-7", entry, hlc=HLC, head=head)
            model = ViewChangeMsg(v=1, kind="view_change", id=f"tab-7:{seq}", origin="gateway",
                                  hlc=HLC, body=ViewChange(seq=seq, order_id=order_id,
                                                           view=view, head=head))
            assert decode(composed) == decode(encode(model)) == model
            assert composed == encode(model)


def test_snapshot_bytes_decode_to_the_encoded_envelope():
    views = _views()
    for seq, shown in ((0, []), (42, views)):
        composed = snapshot_bytes("tab-7", seq, [_stored(v) for v in shown], hlc=HLC)
        model = SnapshotMsg(v=1, kind="snapshot", id=f"tab-7:snapshot:{seq}", origin="gateway",
                            hlc=HLC, body=Snapshot(seq=seq, views=tuple(shown)))
        assert decode(composed) == decode(encode(model)) == model
        assert composed == encode(model)


def test_view_changes_bytes_decode_to_the_encoded_envelope():
    views = _views()
    cases = [(v.order_id, v) for v in views] + [(ODD_ID, None), ("A", None)]
    entries = [Entry(seq, order_id, None if view is None else _stored(view))
               for seq, (order_id, view) in enumerate(cases, start=5)]
    for head in (None, 40):
        composed = view_changes_bytes("tab-7", entries, hlc=HLC, head=head)
        model = ViewChangesMsg(
            v=1, kind="view_changes", id=f"tab-7:5-{4 + len(cases)}", origin="gateway", hlc=HLC,
            body=ViewChanges(head=head, entries=tuple(
                ViewChange(seq=seq, order_id=order_id, view=view)
                for seq, (order_id, view) in enumerate(cases, start=5))))
        assert decode(composed) == decode(encode(model)) == model
        assert composed == encode(model)


def test_batches_cut_at_the_entry_and_byte_limits_and_at_a_seq_jump():
    entries = [Entry(s, f"O{s}", "x" * 100) for s in range(1, 11)]
    seqs = [[e.seq for e in g] for g in batches(entries, max_entries=4, max_bytes=10_000)]
    assert seqs == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    seqs = [[e.seq for e in g] for g in batches(entries, max_entries=100, max_bytes=250)]
    assert seqs == [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]]
    big = [Entry(1, "A", "x" * 1000), Entry(2, "B", None), Entry(4, "C", "y")]
    assert [[e.seq for e in g] for g in batches(big, max_bytes=500)] == [[1], [2], [4]]
    assert batches([]) == []


def test_a_tablet_too_old_for_view_changes_is_told_by_its_version():
    from gateway.streams.wire import READS_VIEW_CHANGES, older_than

    assert READS_VIEW_CHANGES == (0, 2)
    assert older_than("0.1.0", (0, 2)) and older_than("0.1", (0, 2))
    assert not older_than("0.2.0", (0, 2)) and not older_than("1.0.0", (0, 2))
    for unreadable in ("0+unknown", "", "dev", "0"):  # not flagged: we cannot tell
        assert not older_than(unreadable, (0, 2)), unreadable


def test_a_snapshot_in_parts_decodes_to_the_encoded_envelopes():
    from gateway.streams.wire import snapshot_parts

    views = _views()
    bodies = [_stored(v) for v in views]
    parts = snapshot_parts(bodies, limit=len(bodies[0]))  # one view a part
    assert [len(p) for p in parts] == [1] * len(views)
    for part, chunk in enumerate(parts, start=1):
        composed = snapshot_bytes("tab-7", 42, chunk, hlc=HLC, part=part, parts=len(parts))
        model = SnapshotMsg(v=1, kind="snapshot", id=f"tab-7:snapshot:42:{part}",
                            origin="gateway", hlc=HLC,
                            body=Snapshot(seq=42, views=(views[part - 1],), part=part,
                                          parts=len(parts)))
        assert decode(composed) == model
        assert composed == encode(model)
    assert snapshot_parts([]) == [[]]
    assert snapshot_parts(["a" * 10, "b" * 10, "c"], limit=15) == [["a" * 10], ["b" * 10, "c"]]
