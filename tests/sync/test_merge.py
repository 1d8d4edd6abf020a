"""Scenario tests of the merge rules, in the words of the depot (DESIGN §3)."""

from __future__ import annotations

from datetime import timedelta

from sync.merge import driver_orders, merge, merge_order
from sync.model import Policy, SupersessionRule
from tests.sync.factories import at, claim, resolution

POLICY = Policy()


def field_view(claims, resolutions=(), *, now_minute=1, policy=POLICY, field="driver"):
    view = merge_order("X", claims, resolutions, policy, at(now_minute))
    return view, view.fields[field]


def test_sources_that_agree_give_the_value():
    legacy = claim("L1", "legacy", "7")
    dispatch = claim("D1", "dispatch", "7", minute=5)
    _, fv = field_view([legacy, dispatch])
    assert fv.state == "agreed"
    assert fv.value == "7"
    assert [c.source for c in fv.candidates] == ["dispatch", "legacy"]


def test_legacy_and_dispatch_disagree_on_driver_is_a_conflict():
    legacy = claim("L1", "legacy", "7")
    dispatch = claim("D1", "dispatch", "12", minute=5)
    view, fv = field_view([legacy, dispatch], now_minute=6)
    assert fv.state == "conflict"
    assert fv.value is None
    assert fv.conflict is not None
    assert {(c.source, c.value) for c in fv.conflict.candidates} == {
        ("legacy", "7"),
        ("dispatch", "12"),
    }
    assert fv.conflict.opened_at == at(5)
    assert view.value("driver") is None
    assert not view.hold


def test_contested_order_is_on_both_drivers_routes():
    result = merge(
        [claim("L1", "legacy", "7"), claim("D1", "dispatch", "12", minute=5)], [], POLICY, at(6)
    )
    assert [v.order_id for v in driver_orders(result.views, "7")] == ["X"]
    assert [v.order_id for v in driver_orders(result.views, "12")] == ["X"]
    assert [v.order_id for v in driver_orders(result.views, "3")] == []
    assert len(result.conflicts) == 1


def test_cancel_in_optimizer_vs_active_in_legacy_is_a_conflict():
    legacy = claim("L1", "legacy", "planned", field="status")
    optimizer = claim("O1", "optimizer", "cancelled", field="status", minute=3)
    _, fv = field_view([legacy, optimizer], field="status")
    assert fv.state == "conflict"
    assert {c.value for c in fv.candidates} == {"planned", "cancelled"}


def test_resolution_settles_exactly_the_claims_it_saw():
    legacy = claim("L1", "legacy", "7")
    dispatch = claim("D1", "dispatch", "12", minute=5)
    res = resolution("R1", dispatch, (legacy, dispatch), minute=8)
    view, fv = field_view([legacy, dispatch], [res], now_minute=9)
    assert fv.state == "resolved"
    assert fv.value == "12"
    assert fv.resolution_id == "R1"
    assert fv.resolved_by == "dispatch:anna"
    assert view.conflicts() == ()


def test_newer_differing_claim_reopens_resolved_conflict():
    legacy = claim("L1", "legacy", "7")
    dispatch = claim("D1", "dispatch", "12", minute=5)
    res = resolution("R1", dispatch, (legacy, dispatch), minute=8)
    legacy2 = claim("L2", "legacy", "9", minute=20)
    _, fv = field_view([legacy, dispatch, legacy2], [res], now_minute=21)
    assert fv.state == "conflict"
    assert {c.claim_id for c in fv.candidates} == {"L2", "D1"}


def test_newer_agreeing_claim_keeps_the_conflict_closed():
    legacy = claim("L1", "legacy", "7")
    dispatch = claim("D1", "dispatch", "12", minute=5)
    res = resolution("R1", dispatch, (legacy, dispatch), minute=8)
    optimizer = claim("O1", "optimizer", "12", minute=20)
    _, fv = field_view([legacy, dispatch, optimizer], [res], now_minute=21)
    assert fv.state == "resolved"
    assert fv.value == "12"


def test_writeback_echo_in_next_export_changes_nothing():
    legacy = claim("L1", "legacy", "7")
    dispatch = claim("D1", "dispatch", "12", minute=5)
    res = resolution("R1", dispatch, (legacy, dispatch), minute=8)
    before, _ = field_view([legacy, dispatch], [res], now_minute=30)
    # the next nightly export carries the written-back value: legacy now agrees
    legacy2 = claim("L2", "legacy", "12", minute=24 * 60)
    after, fv = field_view([legacy, dispatch, legacy2], [res], now_minute=24 * 60 + 1)
    assert fv.state == "agreed"
    assert fv.value == before.value("driver") == "12"
    assert after.conflicts() == ()


def test_reapplying_the_same_claim_is_a_no_op():
    legacy = claim("L1", "legacy", "7")
    dispatch = claim("D1", "dispatch", "12", minute=5)
    once = merge_order("X", [legacy, dispatch], [], POLICY, at(6))
    twice = merge_order("X", [legacy, dispatch, dispatch, legacy], [], POLICY, at(6))
    assert once == twice


def test_driver_action_based_on_legacy_value_makes_it_stale_not_a_conflict():
    legacy = claim("L1", "legacy", "planned", field="status")
    driver = claim("V1", "driver", "delivered", field="status", minute=600, based_on=("L1",))
    _, fv = field_view([legacy, driver], field="status", now_minute=601)
    assert fv.state == "agreed"
    assert fv.value == "delivered"
    assert [(s.source, s.value, s.rule) for s in fv.stale] == [("legacy", "planned", "based-on")]


def test_legacy_value_older_than_driver_outcome_is_stale_by_named_rule():
    legacy = claim("L1", "legacy", "planned", field="status", as_of_minute=0)
    driver = claim("V1", "driver", "failed", field="status", minute=600)  # no based_on
    _, fv = field_view([legacy, driver], field="status", now_minute=601)
    assert fv.state == "agreed"
    assert fv.value == "failed"
    assert fv.stale[0].rule == "driver-outcome-over-older-export"


def test_named_rule_is_off_when_not_configured():
    legacy = claim("L1", "legacy", "planned", field="status")
    driver = claim("V1", "driver", "failed", field="status", minute=600)
    _, fv = field_view([legacy, driver], field="status", policy=Policy(rules=()))
    assert fv.state == "conflict"


def test_newer_legacy_cancel_the_driver_never_saw_is_a_conflict():
    legacy = claim("L1", "legacy", "planned", field="status")
    driver = claim("V1", "driver", "delivered", field="status", minute=600, based_on=("L1",))
    cancel = claim("L2", "legacy", "cancelled", field="status", minute=610)
    _, fv = field_view([legacy, driver, cancel], field="status", now_minute=611)
    assert fv.state == "conflict"
    assert {c.value for c in fv.candidates} == {"delivered", "cancelled"}


def test_custom_supersession_rule_is_applied_by_name():
    rule = SupersessionRule(
        name="dispatch-over-older-optimizer", newer="dispatch", older="optimizer"
    )
    optimizer = claim("O1", "optimizer", "5")
    dispatch = claim("D1", "dispatch", "6", minute=2)
    _, fv = field_view([optimizer, dispatch], policy=Policy(rules=(rule,)), now_minute=3)
    assert fv.state == "agreed"
    assert fv.stale[0].rule == "dispatch-over-older-optimizer"


def test_order_gone_from_export_is_withdrawn_not_cancelled():
    legacy = claim("L1", "legacy", "planned", field="status")
    gone = claim("L2", "legacy", None, field="status", minute=24 * 60, present=False)
    _, fv = field_view([legacy, gone], field="status", now_minute=24 * 60 + 1)
    assert fv.state == "withdrawn"
    assert fv.value is None
    assert fv.withdrawn == ("legacy",)


def test_withdrawn_source_leaves_the_others_standing():
    legacy = claim("L1", "legacy", "7")
    dispatch = claim("D1", "dispatch", "12", minute=5)
    gone = claim("L2", "legacy", None, minute=24 * 60, present=False)
    _, fv = field_view([legacy, dispatch, gone], now_minute=24 * 60 + 1)
    assert fv.state == "agreed"
    assert fv.value == "12"
    assert fv.withdrawn == ("legacy",)


def test_conflict_past_its_deadline_escalates_and_puts_the_stop_on_hold():
    policy = Policy(escalate_after=timedelta(minutes=30))
    legacy = claim("L1", "legacy", "planned", field="status")
    optimizer = claim("O1", "optimizer", "cancelled", field="status", minute=10)
    early, fv = field_view([legacy, optimizer], field="status", policy=policy, now_minute=39)
    assert fv.conflict is not None and not fv.conflict.escalated
    assert not early.hold
    late, fv = field_view([legacy, optimizer], field="status", policy=policy, now_minute=40)
    assert fv.conflict is not None and fv.conflict.escalated
    assert late.hold


def test_override_is_shown_as_an_override():
    legacy = claim("L1", "legacy", "7")
    dispatch = claim("D1", "dispatch", "12", minute=5)
    res = resolution("R1", dispatch, (legacy, dispatch), minute=5, override=True)
    _, fv = field_view([legacy, dispatch], [res], now_minute=6)
    assert fv.state == "resolved"
    assert fv.override


def test_values_compare_as_json_not_as_text():
    a = claim("A", "legacy", {"start": "08:00", "end": "10:00"}, field="window")
    b = claim("B", "dispatch", {"end": "10:00", "start": "08:00"}, field="window", minute=1)
    c = claim("C", "optimizer", "1", field="window", minute=2)
    _, fv = field_view([a, b], field="window")
    assert fv.state == "agreed"
    _, fv = field_view([a, b, c], field="window", now_minute=3)
    assert fv.state == "conflict"


def test_latest_claim_of_a_source_is_its_word():
    old = claim("L1", "legacy", "7")
    new = claim("L2", "legacy", "12", minute=24 * 60)
    dispatch = claim("D1", "dispatch", "12", minute=5)
    _, fv = field_view([new, dispatch, old], now_minute=24 * 60 + 1)
    assert fv.state == "agreed"
    assert fv.value == "12"
