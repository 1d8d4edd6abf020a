"""The conflict screen as data: each candidate's value, source and age, stale marks, the
deadline, and the note a driver's preference sends (a claim, never a resolution)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from agent.model import RouteStop
from sync.envelope import SourceFreshness
from sync.model import Candidate, Conflict
from ui.viewmodels.route import route_order
from ui.viewmodels.words import (
    Meaning,
    ago,
    cadence_words,
    clock,
    clock_on,
    field_words,
    source_words,
    value_words,
)


@dataclass(frozen=True)
class CandidateCard:
    claim_id: str
    source: str
    value: str  # "Driver 12", "cancelled"
    source_text: str  # "legacy FoxPro export"
    as_of: str  # "as of 00:00"
    age: str  # "10 h 41 min ago"
    cadence: str  # "nightly" (when the gateway said)
    stale: str | None  # "stale: superseded (rule driver-outcome-over-older-export)"
    meaning: Meaning
    can_choose: bool  # the depot lets drivers resolve this field


@dataclass(frozen=True)
class ConflictCard:
    order_id: str
    field: str
    title: str  # "Status of ORD-1 — sources disagree"
    candidates: tuple[CandidateCard, ...]
    stale: tuple[CandidateCard, ...]
    deadline: str  # "dispatch decides by 08:50, then hold"
    safe_default: str  # what the stop shows meanwhile
    escalated: bool


@dataclass(frozen=True)
class ConflictScreen:
    title: str
    cards: tuple[ConflictCard, ...]
    empty: str | None


def _candidate(field: str, c: Candidate, cadences: dict[str, int | None], *, now: datetime,
               zone: tzinfo, can_choose: bool) -> CandidateCard:
    return CandidateCard(
        claim_id=c.claim_id,
        source=c.source,
        value=value_words(field, c.value, zone, now),
        source_text=source_words(c.source),
        as_of=f"as of {clock_on(c.as_of, zone, now)}",
        age=ago((now - c.as_of).total_seconds()),
        cadence=cadence_words(cadences[c.source]) if c.source in cadences else "",
        stale=None,
        meaning="info",
        can_choose=can_choose,
    )


def conflict_card(stop: RouteStop, conflict: Conflict, *, now: datetime, zone: tzinfo,
                  sources: Sequence[SourceFreshness] = (),
                  driver_resolves: Sequence[str] = ()) -> ConflictCard:
    cadences = {s.source: s.cadence_s for s in sources}
    choose = conflict.field in driver_resolves
    cards = tuple(_candidate(conflict.field, c, cadences, now=now, zone=zone, can_choose=choose)
                  for c in conflict.candidates)
    fv = stop.view.fields.get(conflict.field)
    stale = tuple(
        CandidateCard(
            claim_id=s.claim_id, source=s.source,
            value=value_words(conflict.field, s.value, zone, now),
            source_text=source_words(s.source),
            as_of=f"as of {clock_on(s.as_of, zone, now)}",
            age=ago((now - s.as_of).total_seconds()),
            cadence=cadence_words(cadences[s.source]) if s.source in cadences else "",
            stale=f"stale — rule {s.rule}",
            meaning="muted", can_choose=False)
        for s in (fv.stale if fv is not None else ()))
    deadline = clock(conflict.deadline, zone)
    if conflict.escalated or stop.hold:
        when = f"dispatch did not decide by {deadline}: on hold — confirm with dispatch"
        default = "The stop is ON HOLD: do not deliver or re-route until dispatch confirms."
    else:
        when = f"dispatch decides by {deadline}, then hold"
        default = ("Until dispatch decides, the stop follows neither side: "
                   f"its {field_words(conflict.field)} shows \"sources disagree\".")
    return ConflictCard(
        order_id=stop.order_id,
        field=conflict.field,
        title=f"{field_words(conflict.field).capitalize()} of {stop.order_id} — "
              "sources disagree",
        candidates=cards,
        stale=stale,
        deadline=when,
        safe_default=default,
        escalated=conflict.escalated or stop.hold,
    )


def conflict_screen(stops: Sequence[RouteStop], *, now: datetime, zone: tzinfo,
                    sources: Sequence[SourceFreshness] = (),
                    driver_resolves: Sequence[str] = (),
                    order_id: str | None = None) -> ConflictScreen:
    cards = tuple(
        conflict_card(stop, c, now=now, zone=zone, sources=sources,
                      driver_resolves=driver_resolves)
        for stop in route_order(stops) if order_id is None or stop.order_id == order_id
        for c in stop.conflicts
    )
    return ConflictScreen(
        title="Conflicts" if order_id is None else f"Conflicts of {order_id}",
        cards=cards,
        empty=None if cards else "No conflicts: every source agrees.",
    )


def preference_note(card: ConflictCard, candidate: CandidateCard) -> str:
    """The driver's preference, sent as a driver note (a claim, never a resolution)."""
    return (f"Driver prefers {candidate.source_text}'s {field_words(card.field)}: "
            f"{candidate.value} (not a decision: dispatch decides)")
