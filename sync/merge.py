"""Merge: from claims, resolutions, policy and ``now`` to order views and open conflicts.

Rules of this file (DESIGN §3). They are the only way a value wins: no source priority, no
last-writer-wins. Applied per (order, field), in this order:

=====  ======================  =============================================================
step   rule                    effect
=====  ======================  =============================================================
1      echo                    a claim seen twice (same ``claim_id``) counts once
2      latest-per-source       each source's current word is its claim with the greatest
                               ``(hlc, claim_id)``; older claims of that source are history
3      withdrawn               a latest claim with ``present=False`` ("no longer in the
                               export") takes the source out; never read as a cancellation
4      based-on                a claim whose id is known (through ``based_on``, followed
                               transitively) to another live claim, and that does not know
                               that claim back, is *stale* when its value differs
5      named rules             ``Policy.rules``: a claim from ``older`` is *stale* when a
                               ``newer``-source claim on the field is later (``as_of``) and
                               has one of the rule's values; shown under the rule's name
6      agreement               every remaining candidate has the same value → ``agreed``
7      resolution              differing candidates all in some resolution's ``seen`` (the
                               rest agree with its value) → ``resolved``; a later differing
                               claim re-opens, a later agreeing claim keeps it closed
8      conflict                otherwise → ``conflict`` listing every candidate; opened when
                               its newest candidate arrived
9      escalation              a conflict open for ``Policy.escalate_after`` is escalated and
                               its order goes on ``hold``
=====  ======================  =============================================================

All orderings are by content (``hlc``, ids), so any permutation or duplication of the same
claims and resolutions yields the same views.

The views are built with ``sync.model.trusted`` (no validation): every value in them comes from
validated claims, resolutions and policy, so they equal, and serialise as, validated ones.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from pydantic import JsonValue

from sync.model import (
    Candidate,
    Claim,
    Conflict,
    FieldView,
    OrderView,
    Policy,
    Resolution,
    StaleCandidate,
    SupersessionRule,
    canonical,
    trusted,
)

BASED_ON = "based-on"


@dataclass(frozen=True)
class MergeResult:
    """The views of every order that has claims, and the open conflicts among them."""

    views: Mapping[str, OrderView]
    conflicts: tuple[Conflict, ...]


def merge(
    claims: Iterable[Claim],
    resolutions: Iterable[Resolution],
    policy: Policy,
    now: datetime,
) -> MergeResult:
    """Merge every order's claims into views; conflicts come sorted by (order, field)."""
    by_order: dict[str, list[Claim]] = defaultdict(list)
    for claim in claims:
        by_order[claim.order_id].append(claim)
    res_by_order: dict[str, list[Resolution]] = defaultdict(list)
    for res in resolutions:
        res_by_order[res.order_id].append(res)
    views = {
        order_id: merge_order(order_id, by_order[order_id], res_by_order[order_id], policy, now)
        for order_id in sorted(by_order)
    }
    conflicts = tuple(c for v in views.values() for c in v.conflicts())
    return MergeResult(views=views, conflicts=conflicts)


def merge_order(
    order_id: str,
    claims: Iterable[Claim],
    resolutions: Iterable[Resolution],
    policy: Policy,
    now: datetime,
) -> OrderView:
    """The view of one order from its claims and resolutions (other orders' are ignored)."""
    by_field: dict[str, dict[str, Claim]] = defaultdict(dict)
    for claim in claims:
        if claim.order_id == order_id:
            by_field[claim.field][claim.claim_id] = claim  # rule 1: echo
    res_by_field: dict[str, list[Resolution]] = defaultdict(list)
    for res in resolutions:
        if res.order_id == order_id:
            res_by_field[res.field].append(res)
    fields = {
        name: merge_field(
            order_id, name, list(by_field[name].values()), res_by_field[name], policy, now
        )
        for name in sorted(by_field)
    }
    hold = any(f.conflict is not None and f.conflict.escalated for f in fields.values())
    return trusted(OrderView, order_id=order_id, fields=fields, hold=hold)


def merge_field(
    order_id: str,
    field: str,
    claims: list[Claim],
    resolutions: list[Resolution],
    policy: Policy,
    now: datetime,
) -> FieldView:
    """Apply the rules of this file to one field's claims."""
    unique = {c.claim_id: c for c in claims}  # rule 1
    latest: dict[str, Claim] = {}
    if len(unique) == 1:
        for claim in unique.values():
            latest[claim.source] = claim
    else:
        for claim in sorted(unique.values(), key=_by_hlc):
            latest[claim.source] = claim  # rule 2: the last one sorted wins its source
    withdrawn = tuple(sorted(s for s, c in latest.items() if not c.present))  # rule 3
    live = sorted((c for c in latest.values() if c.present), key=_by_source)
    if len(live) == 1:
        # one live claim: nothing can make it stale (rules 4 and 5 need a second one, and a
        # stale set of every live claim is dropped), and it agrees with itself (rule 6)
        return trusted(
            FieldView,
            field=field,
            state="agreed",
            value=live[0].value,
            candidates=(_candidate(live[0]),),
            stale=(),
            withdrawn=withdrawn,
        )
    texts = {c.claim_id: canonical(c.value) for c in live}  # each value's text, once
    stale = _stale(live, unique, policy.rules, field, texts)  # rules 4 and 5
    if len(stale) == len(live):
        stale = {}  # knowledge that contradicts itself supersedes nothing
    remaining = [c for c in live if c.claim_id not in stale]
    candidates = tuple(_candidate(c) for c in remaining)
    stale_views = tuple(
        trusted(
            StaleCandidate,
            source=c.source,
            value=c.value,
            as_of=c.as_of,
            claim_id=c.claim_id,
            superseded_by=stale[c.claim_id][0],
            rule=stale[c.claim_id][1],
        )
        for c in live
        if c.claim_id in stale
    )
    if not remaining:
        return trusted(
            FieldView, field=field, state="withdrawn", stale=stale_views, withdrawn=withdrawn
        )
    values = {texts[c.claim_id] for c in remaining}
    if len(values) == 1:  # rule 6
        return trusted(
            FieldView,
            field=field,
            state="agreed",
            value=remaining[0].value,
            candidates=candidates,
            stale=stale_views,
            withdrawn=withdrawn,
        )
    resolution = _covering_resolution(remaining, resolutions, texts)  # rule 7
    if resolution is not None:
        return trusted(
            FieldView,
            field=field,
            state="resolved",
            value=resolution.value,
            candidates=candidates,
            stale=stale_views,
            withdrawn=withdrawn,
            resolution_id=resolution.resolution_id,
            resolved_by=resolution.by,
            override=resolution.override,
        )
    opened_at = max(c.received_at for c in remaining)  # rule 8
    deadline = opened_at + policy.escalate_after
    conflict = trusted(
        Conflict,
        order_id=order_id,
        field=field,
        opened_at=opened_at,
        deadline=deadline,
        escalated=now >= deadline,  # rule 9
        candidates=candidates,
    )
    return trusted(
        FieldView,
        field=field,
        state="conflict",
        candidates=candidates,
        stale=stale_views,
        withdrawn=withdrawn,
        conflict=conflict,
    )


def _by_hlc(claim: Claim) -> tuple[str, str]:
    return (claim.hlc, claim.claim_id)


def _by_source(claim: Claim) -> tuple[str, str]:
    return (claim.source, claim.claim_id)


def covers(resolution: Resolution, candidates: Iterable[Claim]) -> bool:
    """True when the resolution settles the disagreement among these candidates.

    Every candidate that differs from the chosen value must be one the resolution saw; a
    candidate it did not see may only agree with the chosen value.
    """
    return _covers(resolution, candidates, {})


def _covers(resolution: Resolution, candidates: Iterable[Claim], texts: Mapping[str, str]
            ) -> bool:
    """``covers``, with the candidates' canonical texts by claim id where known."""
    chosen = canonical(resolution.value)
    seen = set(resolution.seen)
    return all(
        c.claim_id in seen
        or (texts[c.claim_id] if c.claim_id in texts else canonical(c.value)) == chosen
        for c in candidates
    )


def _covering_resolution(
    candidates: list[Claim], resolutions: list[Resolution], texts: Mapping[str, str]
) -> Resolution | None:
    covering = [r for r in resolutions if _covers(r, candidates, texts)]
    if not covering:
        return None
    return max(covering, key=lambda r: (r.hlc, r.resolution_id))


def _knowledge(claim: Claim, known_claims: Mapping[str, Claim]) -> set[str]:
    """Claim ids this claim's author knew of: ``based_on``, followed through known claims."""
    seen: set[str] = set()
    todo = list(claim.based_on)
    while todo:
        cid = todo.pop()
        if cid in seen:
            continue
        seen.add(cid)
        parent = known_claims.get(cid)
        if parent is not None:
            todo.extend(parent.based_on)
    return seen


def _rule_applies(rule: SupersessionRule, field: str, newer: Claim, older: Claim,
                  newer_text: str) -> bool:
    if rule.field is not None and rule.field != field:
        return False
    if newer.source != rule.newer or older.source != rule.older:
        return False
    if not older.as_of < newer.as_of:
        return False
    return not rule.values or newer_text in {canonical(v) for v in rule.values}


def _stale(
    live: list[Claim],
    known_claims: Mapping[str, Claim],
    rules: tuple[SupersessionRule, ...],
    field: str,
    texts: Mapping[str, str],
) -> dict[str, tuple[str, str]]:
    """Live claims made stale, mapped to (superseding claim id, rule name); ``texts``: each
    live claim's canonical value."""
    knowledge = {c.claim_id: _knowledge(c, known_claims) for c in live}
    stale: dict[str, tuple[str, str]] = {}
    for older in live:
        for newer in live:
            newer_text = texts[newer.claim_id]
            if newer is older or newer_text == texts[older.claim_id]:
                continue
            knows = older.claim_id in knowledge[newer.claim_id]
            known_back = newer.claim_id in knowledge[older.claim_id]
            if knows and not known_back:
                stale[older.claim_id] = (newer.claim_id, BASED_ON)
                break
            rule = next(
                (r for r in rules if _rule_applies(r, field, newer, older, newer_text)), None
            )
            if rule is not None and not known_back:
                stale[older.claim_id] = (newer.claim_id, rule.name)
                break
    return stale


def _candidate(claim: Claim) -> Candidate:
    return trusted(
        Candidate,
        source=claim.source,
        value=claim.value,
        as_of=claim.as_of,
        claim_id=claim.claim_id,
        received_at=claim.received_at,
    )


def drivers_of(view: OrderView) -> list[str]:
    """The drivers whose route holds this order: the settled driver, or every candidate of a
    contested assignment (so each of them sees the conflict). Sorted, without repeats."""
    fv = view.fields.get("driver")
    if fv is None:
        return []
    if fv.state in ("agreed", "resolved"):
        values = [fv.value]
    elif fv.state == "conflict":
        values = [c.value for c in fv.candidates]
    else:
        values = []
    return sorted({v for v in values if isinstance(v, str) and v})


def driver_orders(views: Mapping[str, OrderView], driver: str) -> list[OrderView]:
    """The orders a driver should see (``drivers_of`` names the driver), by order id.

    A contested assignment puts the order on every candidate driver's route, with the conflict;
    once a value is settled (agreed or resolved) only that driver keeps it.
    """
    return [views[o] for o in sorted(views) if driver in drivers_of(views[o])]


def value_of(view: FieldView) -> JsonValue:
    """A field view's settled value (None while in conflict or withdrawn)."""
    return view.value if view.state in ("agreed", "resolved") else None
