"""The screens' view-models, without a window: words, ages, badges, meanings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from agent.model import LocalAction, RefusedAction, RouteStop, SyncStatus
from sync.envelope import SourceFreshness
from sync.merge import merge_order
from sync.model import Claim, OrderView, Policy
from ui import viewmodels as vm

ZONE = ZoneInfo("Europe/Berlin")
MIDNIGHT = datetime(2026, 11, 26, 23, 0, tzinfo=UTC)  # 00:00 in Berlin
NOW = MIDNIGHT + timedelta(hours=10, minutes=41)


def _claim(cid: str, source: str, field: str, value: object, at: datetime,
           based_on: tuple[str, ...] = ()) -> Claim:
    return Claim(claim_id=cid, order_id="X", field=field, value=value, source=source,  # type: ignore[arg-type]
                 as_of=at, received_at=at, based_on=based_on,
                 hlc=f"{int(at.timestamp() * 1000):015d}-000000-gw")


def _view(*claims: Claim, now: datetime = NOW, policy: Policy | None = None) -> OrderView:
    return merge_order("X", list(claims), [], policy or Policy(), now)


def _stop(view: OrderView, *local: LocalAction) -> RouteStop:
    return RouteStop(order_id=view.order_id, view=view, local=local, hold=view.hold,
                     warnings=view.warnings, conflicts=view.conflicts())


def test_ages_read_in_words_and_move_with_now() -> None:
    assert vm.ago(20) == "just now"
    assert vm.ago(4 * 60 + 59) == "4 min ago"
    assert vm.ago((10 * 60 + 41) * 60) == "10 h 41 min ago"
    assert vm.ago(2 * 86400 + 3 * 3600) == "2 d 3 h ago"
    assert vm.ago(None) == "age unknown"
    view = _view(_claim("l1", "legacy", "status", "planned", MIDNIGHT),
                 _claim("d1", "dispatch", "status", "cancelled", NOW - timedelta(minutes=5)))
    stop = _stop(view)
    [conflict] = stop.conflicts
    first = vm.conflict_card(stop, conflict, now=NOW, zone=ZONE)
    later = vm.conflict_card(stop, conflict, now=NOW + timedelta(seconds=60), zone=ZONE)
    legacy = next(c for c in first.candidates if c.source == "legacy")
    assert (legacy.source_text, legacy.as_of, legacy.age) == (
        "legacy FoxPro export", "as of 00:00", "10 h 41 min ago")
    assert next(c for c in later.candidates if c.source == "legacy").age == "10 h 42 min ago"


def test_conflict_card_shows_both_sides_in_words_with_the_deadline_in_the_depot_zone() -> None:
    view = _view(_claim("l1", "legacy", "driver", "7", MIDNIGHT),
                 _claim("d1", "dispatch", "driver", "12", NOW - timedelta(minutes=10)))
    stop = _stop(view)
    [conflict] = stop.conflicts
    sources = (SourceFreshness(source="legacy", as_of=MIDNIGHT, cadence_s=86400),)
    card = vm.conflict_card(stop, conflict, now=NOW, zone=ZONE, sources=sources)
    assert {(c.value, c.source_text) for c in card.candidates} == {
        ("Driver 7", "legacy FoxPro export"), ("Driver 12", "dispatch")}
    assert next(c for c in card.candidates if c.source == "legacy").cadence == "nightly"
    deadline = conflict.deadline.astimezone(ZONE).strftime("%H:%M")
    assert card.deadline == f"dispatch decides by {deadline}, then hold"
    assert "follows neither side" in card.safe_default
    assert not any(c.can_choose for c in card.candidates)
    allowed = vm.conflict_card(stop, conflict, now=NOW, zone=ZONE, driver_resolves=("driver",))
    assert all(c.can_choose for c in allowed.candidates)
    note = vm.preference_note(card, card.candidates[0])
    assert note.startswith("Driver prefers") and "dispatch decides" in note


def test_an_escalated_conflict_holds_on_route_stop_and_conflict_screens() -> None:
    view = _view(_claim("l1", "legacy", "status", "planned", MIDNIGHT),
                 _claim("d1", "dispatch", "status", "cancelled", NOW - timedelta(hours=1)))
    assert view.hold
    stop = _stop(view)
    [row] = vm.route_screen([stop], [], now=NOW, zone=ZONE).rows
    assert row.status == "on hold — confirm with dispatch" and row.status_meaning == "hold"
    assert [b.kind for b in row.badges][:2] == ["hold", "conflict"]
    assert vm.stop_screen(stop, [], now=NOW, zone=ZONE).hold is not None
    [card] = vm.conflict_screen([stop], now=NOW, zone=ZONE).cards
    assert card.escalated and "on hold" in card.deadline


def test_stale_values_name_their_rule() -> None:
    legacy = _claim("l1", "legacy", "status", "planned", MIDNIGHT)
    driver = _claim("v1", "driver", "status", "delivered", NOW - timedelta(minutes=3))
    dispatch = _claim("d1", "dispatch", "status", "cancelled", NOW - timedelta(minutes=2))
    view = _view(legacy, driver, dispatch)
    stop = _stop(view)
    [conflict] = stop.conflicts
    card = vm.conflict_card(stop, conflict, now=NOW, zone=ZONE)
    [stale] = card.stale
    assert stale.source == "legacy" and stale.stale is not None
    assert "driver-outcome-over-older-export" in stale.stale


def test_a_local_action_is_pending_then_sent() -> None:
    view = _view(_claim("l1", "legacy", "status", "planned", MIDNIGHT))
    tap = LocalAction(event_id="e1", order_id="X", action="deliver", at=NOW)
    pending = vm.stop_screen(_stop(view, tap), [], now=NOW, zone=ZONE)
    assert [h.text for h in pending.history] == ["delivered at 10:41 — pending"]
    [row] = vm.route_screen([_stop(view, tap)], [], now=NOW, zone=ZONE).rows
    assert row.status == "delivered" and ("pending", "delivered: pending") in {
        (b.kind, b.text) for b in row.badges}
    sent = vm.stop_screen(_stop(view, tap.model_copy(update={"acked": True})), [], now=NOW,
                          zone=ZONE)
    assert [(h.text, h.meaning) for h in sent.history] == [("delivered at 10:41 — sent", "ok")]


def test_a_refused_action_stays_in_sight_even_when_its_order_left_the_route() -> None:
    refused = RefusedAction(event_id="e1", order_id="GONE", action="deliver", at=NOW,
                            reason="order GONE is not on driver 7's route",
                            refused_at=NOW - timedelta(minutes=4))
    view = _view(_claim("l1", "legacy", "status", "planned", MIDNIGHT))
    screen = vm.route_screen([_stop(view)], [refused], now=NOW, zone=ZONE)
    assert screen.summary == "1 stops · 1 refused" or screen.summary.endswith("1 refused")
    gone = screen.rows[-1]
    assert (gone.order_id, gone.status_meaning) == ("GONE", "danger")
    assert gone.badges[0].kind == "refused"
    [line] = vm.refused_lines([refused], now=NOW, zone=ZONE)
    assert line.reason == "order GONE is not on driver 7's route"
    assert line.when == "refused 4 min ago"


def test_sync_bar_offline_since_with_the_waiting_count_and_sources() -> None:
    offline = SyncStatus(online=False, offline_since=MIDNIGHT + timedelta(hours=7, minutes=45),
                         last_sync_at=NOW - timedelta(minutes=56), outbox_size=2,
                         sources=(SourceFreshness(source="legacy", as_of=MIDNIGHT,
                                                  cadence_s=86400),))
    bar = vm.sync_bar(offline, [object(), object()], now=NOW, zone=ZONE)  # type: ignore[list-item]
    assert (bar.state, bar.headline, bar.meaning) == (
        "offline", "Working offline since 07:45", "warn")
    assert bar.waiting == "2 actions waiting" and bar.last_sync == "last sync 56 min ago"
    assert bar.sources == ("legacy: nightly, as of 00:00 (10 h 41 min ago)",)
    assert bar.zone == "times in Europe/Berlin"
    online = vm.sync_bar(SyncStatus(online=True, last_sync_at=NOW), [], now=NOW, zone=ZONE)
    assert (online.state, online.headline, online.waiting) == (
        "up to date", "Up to date", "nothing waiting")
    busy = vm.sync_bar(SyncStatus(online=True), [object()], now=NOW, zone=ZONE)  # type: ignore[list-item]
    assert (busy.state, busy.waiting) == ("syncing", "1 action waiting")


def test_route_follows_the_settled_sequence_and_counts_what_needs_eyes() -> None:
    def stop(order_id: str, seq: int) -> RouteStop:
        claims = [Claim(claim_id=f"{order_id}-{f}", order_id=order_id, field=f, value=v,
                        source="legacy", as_of=MIDNIGHT, received_at=MIDNIGHT,
                        hlc="001795777200000-000000-gw")
                  for f, v in (("status", "planned"), ("sequence", seq),
                               ("customer", f"Customer {order_id}"),
                               ("window", {"start": "2026-11-27T10:00:00+01:00",
                                           "end": "2026-11-27T12:00:00+01:00"}))]
        view = merge_order(order_id, claims, [], Policy(), NOW)
        return _stop(view)

    screen = vm.route_screen([stop("B", 2), stop("A", 3), stop("C", 1)], [], now=NOW, zone=ZONE)
    assert [r.order_id for r in screen.rows] == ["C", "B", "A"]
    assert [r.number for r in screen.rows] == ["1", "2", "3"]
    assert screen.rows[0].title == "Customer C" and screen.rows[0].subtitle == "C"
    assert screen.rows[0].window == "window 10:00–12:00"
    assert screen.summary == "3 stops"
