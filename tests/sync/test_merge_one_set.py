"""``Merged.of_one_set`` builds the JSON of an order whose claims are one claim set's without
building the claims or the view; it must give byte for byte what the model path gives
(``Merged.of(merge_order(...))``), for any values and times."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic_core import to_json

from sync.merge import merge_order
from sync.merged import Merged, OneSet, json_text
from sync.model import Claim, Policy

NAMES = st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=6)
TIMES = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1),
                     timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=2)),
                                                dt.timezone(dt.timedelta(hours=-5,
                                                                         minutes=-30))]))
# the fields the route rules and drivers_of read, with values of the kinds they meet
KNOWN = {"driver": st.sampled_from(["D7", "", None, 7]),
         "eta": st.sampled_from(["2024-06-03T08:00:00+00:00", None, 3]),
         "load": st.sampled_from([1.5, 0, None, "x"]),
         "sequence": st.sampled_from([1, 2.0, None, True]),
         "window": JSON, "status": st.sampled_from(["planned", "cancelled", None])}


@st.composite
def one_sets(draw: st.DrawFn) -> OneSet:
    vals = draw(st.dictionaries(NAMES, JSON, max_size=4))
    for name, values in KNOWN.items():
        if draw(st.booleans()):
            vals[name] = draw(values)
    return OneSet(set_id=draw(st.sampled_from(["legacy:run2:O1", "a#b", "x"])),
                  source=draw(NAMES), vals=vals, as_of=draw(TIMES), received_at=draw(TIMES))


@settings(max_examples=500, deadline=None)
@given(one=one_sets(), now=TIMES)
def test_one_set_gives_what_the_merge_gives(one: OneSet, now: dt.datetime) -> None:
    claims = [Claim(claim_id=f"{one.set_id}#{name}", order_id="O1", field=name, value=value,
                    source=one.source, as_of=one.as_of, received_at=one.received_at, hlc="h1")
              for name, value in one.vals.items()]
    want = Merged.of(merge_order("O1", claims, [], Policy(), now))
    assert Merged.of_one_set("O1", one) == want


@settings(max_examples=2000, deadline=None)
@given(value=st.floats(allow_nan=False, allow_infinity=False) | st.integers() | st.text()
       | st.booleans() | JSON)
def test_json_text_writes_what_to_json_writes(value: object) -> None:
    assert json_text(value) == to_json(value).decode()  # type: ignore[arg-type]


def test_one_set_writes_equal_instants_of_other_zones_apart() -> None:
    berlin = dt.datetime(2024, 6, 3, 2, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    utc = berlin.astimezone(dt.UTC)
    assert berlin == utc
    bodies = [Merged.of_one_set("O1", OneSet("s", "legacy", {"eta": "x"}, t, t)).body
              for t in (berlin, utc)]
    assert '"as_of":"2024-06-03T02:00:00+02:00"' in bodies[0]
    assert '"as_of":"2024-06-03T00:00:00Z"' in bodies[1]
