"""The tablet's stream timing (``sync.follow``): whatever the messages and whenever they come,
the ticker never sleeps through work, the applied ``seq`` is reported soon and not too often,
and a quiet or broken stream is asked again soon but never in a storm."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from sync import follow
from sync.follow import NOTHING, Due, Follow, Timing

EPS = 1e-6


def test_a_connect_asks_at_once_and_reports_at_the_next_tick() -> None:
    timing = Timing(quiet_s=30)
    state, due = follow.connected(follow.start(0.0), 5.0)
    assert due == Due(resync=True)
    state, due = follow.tick(state, timing, 5.25, last=0)
    assert due == Due(applied=0)  # reported though it never moved: the first after a connect


def test_a_burst_is_reported_once_per_interval_with_its_last_seq() -> None:
    timing = Timing(quiet_s=30, applied_every_s=2.0)
    state, _ = follow.tick(follow.connected(follow.start(0.0), 0.0)[0], timing, 0.1, last=0)
    for n, t in enumerate((0.5, 1.0, 1.5), start=1):
        state = follow.applied(state, t, n, head=None)
        state, due = follow.tick(state, timing, t + 0.01, last=n)
        assert due == NOTHING  # the last report was at 0.1
    state, due = follow.tick(state, timing, 2.1, last=3)
    assert due == Due(applied=3)


def test_a_gap_with_no_progress_is_asked_again_after_the_retry_not_the_quiet_timeout() -> None:
    timing = Timing(quiet_s=30, gap_retry_s=2.0)
    state = follow.gap(follow.start(0.0), 10.0, asked_now=True)
    assert follow.wake(state, timing, 10.0, online=True, unnotified=False).poll
    assert not follow.tick(state, timing, 11.9, last=0)[1].resync
    state, due = follow.tick(state, timing, 12.0, last=0)
    assert due.resync and not state.behind


def test_an_offline_ticker_sleeps_long() -> None:
    timing = Timing(quiet_s=0.1)
    wake = follow.wake(follow.start(0.0), timing, 100.0, online=False, unnotified=False)
    assert wake == follow.Wake(timing.offline_wait_s, poll=False)


def test_an_idle_online_ticker_sleeps_no_longer_than_idle_max_s() -> None:
    state = follow.start(0.0)
    assert follow.wake(state, Timing(quiet_s=30), 1.0, online=True,
                       unnotified=False) == follow.Wake(29.0, poll=False)
    assert follow.wake(state, Timing(quiet_s=30, idle_max_s=2.0), 1.0, online=True,
                       unnotified=False) == follow.Wake(2.0, poll=False)
    # offline, the shell has nothing to look for: a connect wakes it
    assert not follow.wake(state, Timing(quiet_s=30, idle_max_s=2.0), 1.0, online=False,
                           unnotified=False).after_s < 60.0


# --- properties -------------------------------------------------------------------------------

timings = st.builds(
    Timing,
    quiet_s=st.floats(0.5, 60),
    gap_retry_s=st.floats(0.1, 5),
    applied_every_s=st.floats(0.1, 5),
    tick_s=st.floats(0.05, 1),
    idle_max_s=st.one_of(st.just(float("inf")), st.floats(0.5, 5)),
)

Event = tuple[str, int, bool]
"""(kind, n, flag): apply n entries (flag: the head says more is due) | gap (flag: asked) |
part | snapshot at n | connect | back (the gateway came back online)."""

events = st.tuples(
    st.sampled_from(["apply", "apply", "apply", "gap", "part", "snapshot", "connect", "back"]),
    st.integers(1, 20), st.booleans())
schedules = st.lists(st.tuples(st.floats(0.0, 8.0), events), max_size=40)


@dataclass
class Tablet:
    """A tablet online and following: messages at given times, and a ticker that waits as
    ``follow.wake`` says and is nudged as ``follow.wakes_sooner`` says (as agent.engine)."""

    timing: Timing
    now: float = 0.0
    last: int = 0  # the store's applied seq
    state: Follow = field(default_factory=lambda: follow.start(0.0))
    # the ticker: when it looks next, and whether a message may wake it sooner
    look_at: float = 0.0
    idle: bool = False
    reports: list[tuple[float, int]] = field(default_factory=list)
    forced: list[float] = field(default_factory=list)  # connects and snapshots
    resyncs: list[tuple[float, float, bool]] = field(default_factory=list)  # (t, progress, behind)
    ticks: list[tuple[Follow, float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.state, _ = follow.connected(self.state, 0.0)
        self.forced.append(0.0)
        self._plan()

    def _plan(self) -> None:
        wake = follow.wake(self.state, self.timing, self.now, online=True, unnotified=False)
        self.look_at, self.idle = self.now + wake.after_s, not wake.poll

    def run_until(self, t: float) -> None:
        while self.look_at <= t:
            self.now = self.look_at
            self._tick()
            self._plan()
        self.now = t

    def _tick(self) -> None:
        before = self.state
        self.ticks.append((before, self.now, self.last))
        if not follow.may_be_due(before, self.timing, self.now):
            return
        self.state, due = follow.tick(before, self.timing, self.now, self.last)
        if due.resync:
            self.resyncs.append((self.now, before.progress_at, before.behind))
        if due.applied is not None:
            self.reports.append((self.now, due.applied))

    def message(self, dt: float, event: Event) -> None:
        self.run_until(self.now + dt)
        kind, n, flag = event
        t, s = self.now, self.state
        if kind == "apply":
            self.last += n
            s = follow.applied(s, t, self.last, self.last + 1 if flag else self.last)
        elif kind == "gap":
            s = follow.gap(s, t, asked_now=flag)
        elif kind == "part":
            s = follow.snapshot_part(s, t)
        elif kind == "snapshot":
            self.last = n
            s = follow.snapshot_applied(s, t)
            self.forced.append(t)
        elif kind == "connect":
            s, _ = follow.connected(s, t)
            self.forced.append(t)
        else:
            s = follow.asked(s, t)
        self.state = s
        if self.idle and follow.wakes_sooner(s, self.timing, self.look_at):
            self._plan()  # nudged: it looks again at once


def _run(timing: Timing, schedule: list[tuple[float, Event]]) -> Tablet:
    tablet = Tablet(timing)
    for dt, event in schedule:
        tablet.message(dt, event)
    return tablet


@settings(max_examples=150, deadline=None)
@given(timings, schedules, st.floats(0.0, 1.0))
def test_a_sleeping_ticker_never_sleeps_through_due_work(timing, schedule, share):
    tablet = _run(timing, schedule)
    wake = follow.wake(tablet.state, timing, tablet.now, online=True, unnotified=False)
    if not wake.poll:
        t = tablet.now + share * wake.after_s * (1 - EPS)
        assert follow.tick(tablet.state, timing, t, tablet.last)[1] == NOTHING


@settings(max_examples=150, deadline=None)
@given(timings, schedules)
def test_an_online_ticker_looks_at_least_every_idle_max_s(timing, schedule):
    tablet = _run(timing, schedule)
    looks = [0.0, *(now for _state, now, _last in tablet.ticks), tablet.now]
    # a message's nudge just before an idle look may turn it into a poll of tick_s
    bound = (timing.idle_max_s + timing.tick_s) * (1 + EPS)
    assert all(b - a <= bound for a, b in pairwise(looks))


@settings(max_examples=150, deadline=None)
@given(timings, schedules)
def test_the_quick_check_never_skips_a_tick_that_had_work(timing, schedule):
    tablet = _run(timing, schedule)
    tablet.run_until(tablet.now + 3 * timing.quiet_s)
    for state, t, last in tablet.ticks:
        if not follow.may_be_due(state, timing, t):
            assert follow.tick(state, timing, t, last)[1] == NOTHING


@settings(max_examples=150, deadline=None)
@given(timings, schedules)
def test_reports_are_never_closer_than_the_interval_and_always_of_a_moved_seq(timing, schedule):
    tablet = _run(timing, schedule)
    tablet.run_until(tablet.now + 2 * timing.applied_every_s + timing.tick_s)
    for (t0, seq0), (t1, seq1) in pairwise(tablet.reports):
        if any(t0 <= f <= t1 for f in tablet.forced):
            continue  # a connect or a snapshot makes the next report due at once
        assert t1 - t0 >= timing.applied_every_s - EPS
        assert seq1 != seq0


@settings(max_examples=150, deadline=None)
@given(timings, schedules)
def test_the_applied_seq_is_reported_within_the_interval_and_a_tick_of_the_last_message(
        timing, schedule):
    tablet = _run(timing, schedule)
    end = tablet.now
    tablet.run_until(end + timing.applied_every_s + 2 * timing.tick_s)
    assert tablet.reports, "nothing was ever reported"
    t, seq = tablet.reports[-1]
    assert seq == tablet.last
    assert t <= end + timing.applied_every_s + timing.tick_s + EPS


@settings(max_examples=150, deadline=None)
@given(timings, schedules)
def test_a_quiet_stream_is_asked_again_soon_and_never_in_a_storm(timing, schedule):
    tablet = _run(timing, schedule)
    end = tablet.now
    tablet.run_until(end + 3 * timing.quiet_s + timing.tick_s)
    for t, progress, behind in tablet.resyncs:
        # never sooner than the gap retry after progress, nor the quiet timeout without a gap
        assert t - progress >= (timing.retry_s if behind else timing.quiet_s) - EPS
    # without messages, the longest stretch without progress is the quiet timeout and a tick
    times = [end] + [t for t, _p, _b in tablet.resyncs if t >= end]
    assert len(times) >= 3
    for a, b in pairwise(times):
        assert b - a <= timing.quiet_s + timing.tick_s + EPS


@settings(max_examples=150, deadline=None)
@given(timings, schedules, st.booleans())
def test_a_gap_with_no_progress_is_asked_again_within_the_retry_and_a_tick(
        timing, schedule, asked_now):
    tablet = _run(timing, schedule)
    tablet.message(0.0, ("gap", 1, asked_now))
    progress, start = tablet.state.progress_at, tablet.now
    tablet.run_until(start + timing.quiet_s + timing.tick_s)
    later = [t for t, _p, _b in tablet.resyncs if t >= start]
    assert later
    assert later[0] <= max(start, progress + timing.retry_s) + timing.tick_s + EPS
