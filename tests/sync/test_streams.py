"""Stream repair: whatever the network does, the receiver ends with exactly the sender's log."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.errors import StreamError
from sync.streams import (
    Receiver,
    Replay,
    SendSnapshot,
    UpToDate,
    plan_repair,
    receive,
    receive_batch,
    restart,
    snapshot,
)


def test_entries_in_order_are_applied():
    state = Receiver()
    for seq in (1, 2, 3):
        step = receive(state, seq)
        assert step.verdict == "apply"
        state = step.receiver
    assert state.last == 3


def test_duplicate_is_ignored():
    step = receive(Receiver(last=5), 4)
    assert step.verdict == "duplicate"
    assert step.request_after is None


def test_gap_asks_once_for_everything_after_last():
    first = receive(Receiver(last=5), 8)
    assert (first.verdict, first.request_after) == ("gap", 5)
    second = receive(first.receiver, 9)
    assert (second.verdict, second.request_after) == ("gap", None)


def test_restart_always_asks():
    step = restart(Receiver(last=5, asked_after=5))
    assert step.request_after == 5


def test_sender_replays_when_its_log_reaches_back():
    assert plan_repair(3, first=1, last=9) == Replay(4, 9)


def test_sender_sends_a_snapshot_when_the_log_was_compacted():
    assert plan_repair(3, first=6, last=9) == SendSnapshot(9)


def test_sender_sends_a_snapshot_to_a_receiver_ahead_of_a_reset_log():
    assert plan_repair(12, first=1, last=9) == SendSnapshot(9)


def test_receiver_up_to_date_gets_nothing():
    assert plan_repair(9, first=1, last=9) == UpToDate(9)


def test_negative_positions_are_refused():
    with pytest.raises(StreamError):
        receive(Receiver(), 0)
    with pytest.raises(StreamError):
        plan_repair(-1, first=1, last=2)


@st.composite
def networks(draw: st.DrawFn):
    """A sender log of n entries (maybe compacted up to `first`), and what the network does
    with the live sends: each entry may be dropped, duplicated, or delayed past later ones."""
    n = draw(st.integers(min_value=0, max_value=40))
    first = draw(st.integers(min_value=1, max_value=n + 1))
    deliveries = draw(
        st.lists(st.integers(min_value=1, max_value=max(n, 1)), max_size=3 * n + 1)
    ) if n else []
    return n, first, deliveries


def _run(n, first, deliveries):
    log = [f"entry-{i}" for i in range(1, n + 1)]
    state = Receiver()
    applied: list[str] = []
    requests: list[int] = []

    def deliver(seq: int) -> None:
        nonlocal state
        step = receive(state, seq)
        state = step.receiver
        if step.verdict == "apply":
            applied.append(log[seq - 1])
        if step.request_after is not None:
            requests.append(step.request_after)

    def repair(after: int) -> None:
        nonlocal state, applied
        plan = plan_repair(after, first=first, last=n)
        if isinstance(plan, Replay):
            for seq in range(plan.first, plan.last + 1):
                deliver(seq)
        elif isinstance(plan, SendSnapshot):
            state = snapshot(state, plan.seq)
            applied = list(log[: plan.seq])

    for seq in deliveries:  # the lossy live stream
        deliver(seq)
    while requests:  # repair messages are delivered
        repair(requests.pop(0))
    final = restart(state)  # reconnect / quiet timer: the receiver asks once more
    assert final.request_after is not None
    state = final.receiver
    repair(final.request_after)
    while requests:
        repair(requests.pop(0))
    return applied, log, state


@settings(max_examples=1000, deadline=None)
@given(networks())
def test_any_drops_duplicates_and_reorders_end_with_the_senders_log(net):
    applied, log, state = _run(*net)
    assert applied == log
    assert state.last == len(log)


@settings(max_examples=300, deadline=None)
@given(networks())
def test_no_entry_is_applied_twice(net):
    n, _first, deliveries = net
    applied, _, _ = _run(n, 1, deliveries)  # an uncompacted log: replay only, no snapshots
    assert len(applied) == len(set(applied))


@st.composite
def batch_arrivals(draw: st.DrawFn):
    """A receiver state (last applied, maybe a pending request) and a batch first..last."""
    last = draw(st.integers(min_value=0, max_value=30))
    asked = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=last)))
    first = draw(st.integers(min_value=1, max_value=40))
    count = draw(st.integers(min_value=1, max_value=12))
    return Receiver(last=last, asked_after=asked), first, first + count - 1


@settings(max_examples=1000, deadline=None)
@given(batch_arrivals())
def test_a_batch_is_judged_as_its_entries_one_by_one(arrival):
    state, first, last = arrival
    # one by one: the entries applied, and the first gap's request (the batch stops there)
    one = state
    applied: list[int] = []
    request = None
    gap = False
    for seq in range(first, last + 1):
        step = receive(one, seq)
        if step.verdict == "gap":
            one, request, gap = step.receiver, step.request_after, True
            break
        one = step.receiver
        if step.verdict == "apply":
            applied.append(seq)
    batch = receive_batch(state, first, last)
    if batch.verdict == "apply":
        assert list(range(first + batch.skip, last + 1)) == applied
    else:
        assert applied == []
        assert (batch.verdict == "gap") == gap
    assert batch.receiver == one
    assert batch.request_after == request


def test_a_batch_overlapping_what_was_applied_applies_only_the_rest():
    step = receive_batch(Receiver(last=5), 3, 8)
    assert (step.verdict, step.skip, step.receiver.last) == ("apply", 3, 8)
    assert receive_batch(Receiver(last=8), 3, 8).verdict == "duplicate"
    gap = receive_batch(Receiver(last=2), 5, 8)
    assert (gap.verdict, gap.request_after) == ("gap", 2)
    with pytest.raises(StreamError):
        receive_batch(Receiver(), 3, 2)
