"""Properties of the merge that must hold for every order of events (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sync.merge import covers, merge
from sync.model import Claim, Policy, Resolution, canonical
from tests.sync.factories import at, claim, resolution

POLICY = Policy()
SOURCES = ("legacy", "dispatch", "optimizer", "driver")
EXAMPLES = 400


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Claim], list[Resolution]]:
    """Claims over a few orders, fields and sources, some based on earlier claims, and
    resolutions that saw some of them."""
    n = draw(st.integers(min_value=1, max_value=14))
    claims: list[Claim] = []
    for i in range(n):
        earlier = [c.claim_id for c in claims]
        based = draw(st.lists(st.sampled_from(earlier), max_size=2, unique=True)) if earlier else []
        claims.append(
            claim(
                f"C{i}",
                draw(st.sampled_from(SOURCES)),
                draw(st.sampled_from(["7", "12", "planned", "cancelled", None])),
                order_id=draw(st.sampled_from(["X", "Y"])),
                field=draw(st.sampled_from(["driver", "status"])),
                minute=draw(st.integers(min_value=0, max_value=120)),
                based_on=tuple(based),
                present=draw(st.booleans()) or draw(st.booleans()),
            )
        )
    resolutions: list[Resolution] = []
    for j in range(draw(st.integers(min_value=0, max_value=3))):
        chosen = draw(st.sampled_from(claims))
        same_field = [c for c in claims if (c.order_id, c.field) == (chosen.order_id, chosen.field)]
        seen = draw(st.lists(st.sampled_from(same_field), min_size=1, unique=True))
        resolutions.append(
            resolution(f"R{j}", chosen, (chosen, *seen), minute=draw(st.integers(0, 120)))
        )
    return claims, resolutions


def _shuffled(draw: st.DrawFn, items: list) -> list:
    dup = draw(st.lists(st.sampled_from(items), max_size=4)) if items else []
    return draw(st.permutations(items + dup))


@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.data(), history=histories(), now=st.integers(min_value=0, max_value=300))
def test_any_permutation_or_duplication_gives_the_same_views(data, history, now):
    claims, resolutions = history
    expected = merge(claims, resolutions, POLICY, at(now))
    shuffled_claims = _shuffled(data.draw, claims)
    shuffled_res = _shuffled(data.draw, resolutions)
    got = merge(shuffled_claims, shuffled_res, POLICY, at(now))
    assert dict(got.views) == dict(expected.views)
    assert got.conflicts == expected.conflicts


@settings(max_examples=EXAMPLES, deadline=None)
@given(history=histories(), now=st.integers(min_value=0, max_value=300))
def test_no_disagreement_is_hidden_unless_a_resolution_covers_it(history, now):
    claims, resolutions = history
    result = merge(claims, resolutions, POLICY, at(now))
    for view in result.views.values():
        for fv in view.fields.values():
            values = {canonical(c.value) for c in fv.candidates}
            if len(values) <= 1:
                continue
            # the live candidates disagree: either it is listed as a conflict, with every
            # candidate, or a resolution for this field saw every claim that differs from it
            if fv.state == "conflict":
                assert fv.conflict in result.conflicts
                assert fv.conflict is not None
                assert fv.conflict.candidates == fv.candidates
            else:
                assert fv.state == "resolved"
                res = next(r for r in resolutions if r.resolution_id == fv.resolution_id)
                live = [c for c in claims if c.claim_id in {k.claim_id for k in fv.candidates}]
                assert covers(res, live)
                differing = {c.claim_id for c in live if canonical(c.value) != canonical(res.value)}
                assert differing <= set(res.seen)


@settings(max_examples=EXAMPLES, deadline=None)
@given(history=histories())
def test_every_candidate_is_the_latest_word_of_its_source(history):
    claims, resolutions = history
    result = merge(claims, resolutions, POLICY, at(300))
    for view in result.views.values():
        for name, fv in view.fields.items():
            sources = [c.source for c in fv.candidates]
            assert len(sources) == len(set(sources))
            for cand in fv.candidates:
                mine = [
                    c
                    for c in claims
                    if (c.order_id, c.field, c.source) == (view.order_id, name, cand.source)
                ]
                assert max(mine, key=lambda c: (c.hlc, c.claim_id)).claim_id == cand.claim_id


@settings(max_examples=EXAMPLES, deadline=None)
@given(history=histories(), now=st.integers(min_value=0, max_value=300))
def test_a_field_with_one_live_source_agrees_on_its_latest_word(history, now):
    """The merge's fast path: one live claim is agreed on, stale-free, resolutions or not."""
    claims, resolutions = history
    result = merge(claims, resolutions, POLICY, at(now))
    for view in result.views.values():
        for name, fv in view.fields.items():
            mine = [c for c in claims if (c.order_id, c.field) == (view.order_id, name)]
            latest: dict[str, Claim] = {}
            for c in sorted(mine, key=lambda c: (c.hlc, c.claim_id)):
                latest[c.source] = c
            live = [c for c in latest.values() if c.present]
            if len(live) != 1:
                continue
            assert fv.state == "agreed"
            assert fv.value == live[0].value
            assert [c.claim_id for c in fv.candidates] == [live[0].claim_id]
            assert fv.stale == () and fv.conflict is None and fv.resolution_id is None
            assert fv.withdrawn == tuple(sorted(s for s, c in latest.items() if not c.present))
