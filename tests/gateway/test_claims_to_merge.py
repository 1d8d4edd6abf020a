"""``Store.claims_to_merge`` reads only the claims a merge can depend on: merged, they must give
exactly the view all of the order's claims (``claims_for``) give, for any history. So must
``Store.merge_inputs``, which answers an order of one claim set with the set itself."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.store.core import Store
from sync.merge import merge_order
from sync.merged import Merged, OneSet
from sync.model import Policy, Resolution

T = dt.datetime(2024, 6, 3, 6, 0, tzinfo=dt.UTC)
SOURCES = ("legacy", "dispatch", "driver")
FIELDS = ("driver", "status", "eta")
POLICY = Policy()


@st.composite
def claim_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Claim sets over two orders: some sources' sets share an hlc, some sets name earlier
    claims (of any field, order or set) in ``based_on``, some are withdrawals."""
    out: list[dict[str, Any]] = []
    for n in range(draw(st.integers(min_value=1, max_value=12))):
        fields = draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True))
        earlier = [f"{s['set_id']}#{f}" for s in out for f in s["vals"]] + ["nowhere#eta"]
        out.append({
            "set_id": draw(st.sampled_from([f"s{n}", f"s{n}#x", f"s{n}#"])),
            "source": draw(st.sampled_from(SOURCES)),
            "order_id": draw(st.sampled_from(["A", "B"])),
            "vals": {f: draw(st.sampled_from(["7", "12", "planned", "delivered", None]))
                     for f in fields},
            "minute": draw(st.integers(min_value=0, max_value=3)),
            "hlc": f"h{draw(st.integers(min_value=0, max_value=4))}",
            "based_on": draw(st.lists(st.sampled_from(earlier), max_size=3, unique=True)),
            "present": draw(st.booleans()) or draw(st.booleans()),
        })
    return out


@settings(max_examples=300, deadline=None)
@given(sets=claim_sets(), resolve=st.booleans())
def test_claims_to_merge_give_the_view_all_claims_give(sets, resolve):
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "g.sqlite") as store:
        with store.transaction():
            for s in sets:
                store.add_claim_set(
                    set_id=s["set_id"], source=s["source"], order_id=s["order_id"],
                    vals=s["vals"], as_of=T + dt.timedelta(minutes=s["minute"]),
                    received_at=T, hlc=s["hlc"], present=s["present"],
                    based_on=s["based_on"])
        everything = store.claims_for(["A", "B"])
        subset = store.claims_to_merge(["A", "B"])
        inputs = store.merge_inputs(["A", "B"])
    assert subset.keys() == everything.keys() == inputs.keys()
    for order_id, claims in everything.items():
        ids = {c.claim_id for c in claims}
        assert {c.claim_id for c in subset[order_id]} <= ids
        resolutions = []
        if resolve:  # one resolution that saw every claim of the first field
            field = claims[0].field
            resolutions = [Resolution(
                resolution_id="r1", order_id=order_id, field=field,
                chosen_claim_id=claims[0].claim_id, value=claims[0].value,
                seen=tuple(c.claim_id for c in claims if c.field == field), by="dispatch:x",
                at=T, hlc="h9")]
        now = T + dt.timedelta(minutes=45)
        want = merge_order(order_id, claims, resolutions, POLICY, now)
        got = merge_order(order_id, subset[order_id], resolutions, POLICY, now)
        assert got == want
        assert got.model_dump_json() == want.model_dump_json()
        found = inputs[order_id]
        if isinstance(found, OneSet):
            one_set_orders.append(order_id)
            merged = Merged.of_one_set(order_id, found)
        else:
            assert found == subset[order_id]
            merged = Merged.of(merge_order(order_id, found, resolutions, POLICY, now))
        assert merged == Merged.of(want)


one_set_orders: list[str] = []  # the property above met the shortcut (checked below)


def test_the_property_met_orders_of_one_set() -> None:
    test_claims_to_merge_give_the_view_all_claims_give()
    assert len(one_set_orders) > 20


def test_merge_inputs_answer_one_set_only_when_it_is_one() -> None:
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "g.sqlite") as store:
        with store.transaction():
            for run in (1, 2):  # a later run of one export, claiming every field again
                for order_id in "ABCDE":
                    store.add_claim_set(set_id=f"legacy:{run}:{order_id}", source="legacy",
                                        order_id=order_id, as_of=T, received_at=T,
                                        hlc=f"h{run}", vals={"eta": f"0{run}:00", "driver": "7"})
            # B: the later run leaves a field out; C: another source; D: withdrawn; E: a tie
            store.add_claim_set(set_id="legacy:3:B", source="legacy", order_id="B",
                                vals={"eta": "03:00"}, as_of=T, received_at=T, hlc="h3")
            store.add_claim_set(set_id="dispatch:1", source="dispatch", order_id="C",
                                vals={"driver": "12"}, as_of=T, received_at=T, hlc="h3")
            store.add_claim_set(set_id="legacy:3:D", source="legacy", order_id="D",
                                vals={"eta": "03:00", "driver": "7"}, as_of=T, received_at=T,
                                hlc="h3", present=False)
            store.add_claim_set(set_id="legacy:2b:E", source="legacy", order_id="E",
                                vals={"eta": "03:00", "driver": "7"}, as_of=T, received_at=T,
                                hlc="h2")
        inputs = store.merge_inputs("ABCDE")
    assert inputs["A"] == OneSet("legacy:2:A", "legacy", {"driver": "7", "eta": "02:00"}, T, T)
    assert [o for o, found in inputs.items() if isinstance(found, OneSet)] == ["A"]


def test_claims_to_merge_leave_out_history_and_keep_what_is_named() -> None:
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "g.sqlite") as store:
        with store.transaction():
            for run in (1, 2, 3):
                store.add_claim_set(set_id=f"legacy:{run}:A", source="legacy", order_id="A",
                                    vals={"eta": f"0{run}:00", "status": "planned"}, as_of=T,
                                    received_at=T, hlc=f"h{run}")
            store.add_claim_set(set_id="legacy:4:A", source="legacy", order_id="A",
                                vals={"eta": "04:00"}, as_of=T, received_at=T, hlc="h4")
            store.add_claim_set(set_id="driver:e1", source="driver", order_id="A",
                                vals={"status": "delivered"}, as_of=T, received_at=T,
                                hlc="h5", based_on=["legacy:1:A#status"])
        got = sorted(c.claim_id for c in store.claims_to_merge(["A"])["A"])
    assert got == ["driver:e1#status", "legacy:1:A#status", "legacy:3:A#status",
                   "legacy:4:A#eta"]
