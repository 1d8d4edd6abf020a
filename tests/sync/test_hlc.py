"""Hybrid logical clocks stay monotonic however the wall clock moves."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.errors import SyncError
from sync.hlc import Hlc, observe, tick


def test_tick_follows_the_wall_clock_when_it_moves_forward():
    assert tick(Hlc(100, 3, "a"), 200) == Hlc(200, 0, "a")


def test_tick_counts_when_the_wall_clock_jumps_back():
    assert tick(Hlc(500, 0, "a"), 100) == Hlc(500, 1, "a")


def test_observe_moves_past_a_remote_stamp_from_the_future():
    got = observe(Hlc(100, 0, "a"), Hlc(900, 4, "b"), 150)
    assert got == Hlc(900, 5, "a")
    assert got > Hlc(900, 4, "b")


def test_text_form_sorts_like_the_stamps_and_parses_back():
    stamps = [Hlc(5, 0, "a"), Hlc(5, 1, "a"), Hlc(40, 0, "a"), Hlc(1732000000000, 7, "tab-07")]
    assert sorted(stamps, key=str) == sorted(stamps)
    assert [Hlc.parse(str(s)) for s in stamps] == stamps


@pytest.mark.parametrize("text", ["", "12", "a-b-c", "12-3-", "-1-2-x"])
def test_malformed_stamp_is_refused(text):
    with pytest.raises(SyncError):
        Hlc.parse(text)


events = st.lists(
    st.tuples(
        st.sampled_from(["tick", "observe"]),
        st.integers(min_value=0, max_value=10_000),  # local wall clock: jumps anywhere
        st.integers(min_value=0, max_value=10_000),
        st.integers(min_value=0, max_value=5),
    ),
    max_size=60,
)


@settings(max_examples=500, deadline=None)
@given(events)
def test_clock_is_strictly_monotonic_under_skew_and_backward_jumps(evs):
    clock = Hlc.zero("a")
    for kind, now, remote_wall, remote_counter in evs:
        remote = Hlc(remote_wall, remote_counter, "b")
        new = tick(clock, now) if kind == "tick" else observe(clock, remote, now)
        assert (new.wall_ms, new.counter) > (clock.wall_ms, clock.counter)
        assert new.wall_ms >= now
        if kind == "observe":
            assert (new.wall_ms, new.counter) > (remote.wall_ms, remote.counter)
        clock = new
