"""What each tablet screen shows, as plain data: no Kivy here (tested without a window).

Every function takes what the agent returned and ``now`` (and the depot's zone), and returns
frozen dataclasses of texts, badges and meanings. The Kivy widgets (``ui.screens``) only copy
these onto labels and buttons, so a rule such as "ages say how old, in words" or "a refused
action stays until dismissed" is checked here, not by looking at pixels.

Meanings (``Meaning``) are colours by what they say, not by source: ``ok`` (done, in sync),
``info`` (planned, neutral), ``pending`` (waiting for the gateway), ``warn`` (a rule check, stale
data, offline), ``danger`` (conflict, refused, failed), ``hold`` (escalated: confirm with
dispatch), ``muted`` (cancelled, secondary text). ``ui.theme`` maps them to colours.

Ages are computed from ``now`` each time a screen is built, so a screen rebuilt on a timer
(``ui.screens`` does every ``AGE_REFRESH_S``) shows moving ages without any message arriving.
Times are shown in the depot's zone, named once, on the sync bar (``SyncBar.zone``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Literal

from agent.model import LocalAction, OutboxItem, RefusedAction, RouteStop, SyncStatus
from sync.envelope import SourceFreshness
from sync.model import Candidate, Conflict, FieldView

Meaning = Literal["ok", "info", "pending", "warn", "danger", "hold", "muted"]

AGE_REFRESH_S = 15.0
"""How often a screen is rebuilt with no message arriving, so ages keep moving (<= 30 s)."""

SOURCE_WORDS: dict[str, str] = {
    "legacy": "legacy FoxPro export",
    "dispatch": "dispatch",
    "optimizer": "optimizer",
    "driver": "you (driver)",
}

FIELD_WORDS: dict[str, str] = {
    "status": "status",
    "driver": "driver",
    "route": "route",
    "sequence": "stop number",
    "window": "delivery window",
    "eta": "planned arrival",
    "address": "address",
    "customer": "customer",
    "location": "location",
    "notes": "notes",
    "load": "load",
    "driver_note": "driver's note",
}

STATUS_WORDS: dict[str, tuple[str, Meaning]] = {
    "planned": ("planned", "info"),
    "en_route": ("en route", "info"),
    "delayed": ("delayed", "warn"),
    "arrived": ("arrived", "ok"),
    "delivered": ("delivered", "ok"),
    "failed": ("failed", "danger"),
    "refused": ("refused by customer", "danger"),
    "cancelled": ("cancelled", "muted"),
}

ACTION_WORDS: dict[str, str] = {
    "arrive": "arrived",
    "deliver": "delivered",
    "fail": "failed",
    "refuse": "refused by customer",
    "note": "note",
    "resolve": "choice",
    "dismiss": "dismissal",
}

FAIL_REASONS: tuple[str, ...] = (
    "customer not at home",
    "address not found",
    "no access (gate, dock closed)",
    "goods damaged",
    "vehicle problem",
    "other (see note)",
)
"""The reasons a driver picks from for *failed*; free text goes with them as a note."""


# -- words for times and ages ------------------------------------------------------------------


def ago(seconds: float | None) -> str:
    """An age in words: "just now", "4 min ago", "10 h 41 min ago", "2 d 3 h ago"."""
    if seconds is None:
        return "age unknown"
    s = int(max(0.0, seconds))
    if s < 60:
        return "just now"
    minutes = s // 60
    if minutes < 60:
        return f"{minutes} min ago"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min ago" if minutes else f"{hours} h ago"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h ago" if hours else f"{days} d ago"


def clock(at: datetime | None, zone: tzinfo) -> str:
    """A time of day in the depot's zone ("08:50"); the date too when it is not today's."""
    if at is None:
        return "--:--"
    return at.astimezone(zone).strftime("%H:%M")


def _clock_on(at: datetime, zone: tzinfo, now: datetime) -> str:
    local, today = at.astimezone(zone), now.astimezone(zone)
    if local.date() == today.date():
        return local.strftime("%H:%M")
    return local.strftime("%d %b %H:%M")


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def cadence_words(cadence_s: int | None) -> str:
    if cadence_s is None:
        return "live"
    if cadence_s == 86400:
        return "nightly"
    if cadence_s % 3600 == 0:
        hours = cadence_s // 3600
        return "hourly" if hours == 1 else f"every {hours} h"
    if cadence_s % 60 == 0:
        return f"every {cadence_s // 60} min"
    return f"every {cadence_s} s"


def source_words(source: str) -> str:
    return SOURCE_WORDS.get(source, source)


def field_words(field: str) -> str:
    return FIELD_WORDS.get(field, field.replace("_", " "))


def value_words(field: str, value: Any, zone: tzinfo, now: datetime) -> str:
    """A value as a driver reads it: "Driver 12", "cancelled", "10:00–12:00"."""
    if value is None:
        return "(none)"
    if field == "status" and isinstance(value, str):
        return STATUS_WORDS.get(value, (value.replace("_", " "), "info"))[0]
    if field == "driver":
        return f"Driver {value}"
    if field == "window" and isinstance(value, dict):
        return window_words(value, zone, now)
    if field == "eta":
        at = _time(value)
        return "(none)" if at is None else _clock_on(at, zone, now)
    if field == "location" and isinstance(value, dict):
        return f"{value.get('lat')}, {value.get('lon')}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in sorted(value.items()))
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def window_words(window: Any, zone: tzinfo, now: datetime) -> str:
    if not isinstance(window, dict):
        return "no window"
    start, end = _time(window.get("start")), _time(window.get("end"))
    if start is None and end is None:
        return "no window"
    if start is None:
        return f"until {_clock_on(end, zone, now)}" if end is not None else "no window"
    if end is None:
        return f"from {_clock_on(start, zone, now)}"
    return f"{_clock_on(start, zone, now)}–{clock(end, zone)}"


# -- badges and the route -----------------------------------------------------------------------


@dataclass(frozen=True)
class Badge:
    kind: Literal["conflict", "warning", "pending", "hold", "refused", "sent"]
    text: str
    meaning: Meaning


@dataclass(frozen=True)
class StopRow:
    """One line of the route list."""

    order_id: str
    number: str  # "3" (position on the route)
    title: str  # customer, else the address, else the order id
    subtitle: str  # the address (when the title is the customer) and the order id
    status: str
    status_meaning: Meaning
    window: str  # "window 10:00–12:00"
    eta: str  # "ETA 10:25"
    badges: tuple[Badge, ...]


@dataclass(frozen=True)
class RouteScreen:
    title: str
    rows: tuple[StopRow, ...]
    summary: str  # "12 stops · 2 conflicts · 1 on hold · 1 refused"


def _stop_status(stop: RouteStop) -> tuple[str, Meaning]:
    if stop.hold:
        return "on hold — confirm with dispatch", "hold"
    for action in reversed(stop.local):
        word = ACTION_WORDS.get(action.action)
        if action.action in ("arrive", "deliver", "fail", "refuse") and word is not None:
            meaning = STATUS_WORDS.get(_ACTION_STATUS[action.action], (word, "ok"))[1]
            return word, meaning
    status = stop.view.fields.get("status")
    if status is not None and status.state == "conflict":
        return "sources disagree", "danger"
    value = stop.view.value("status")
    if isinstance(value, str):
        return STATUS_WORDS.get(value, (value.replace("_", " "), "info"))
    return "no status", "muted"


_ACTION_STATUS = {"arrive": "arrived", "deliver": "delivered", "fail": "failed",
                  "refuse": "refused"}


def _badges(stop: RouteStop, refused: Sequence[RefusedAction]) -> tuple[Badge, ...]:
    out: list[Badge] = []
    if stop.hold:
        out.append(Badge("hold", "hold — confirm with dispatch", "hold"))
    if stop.conflicts:
        fields = ", ".join(field_words(c.field) for c in stop.conflicts)
        out.append(Badge("conflict", f"conflict: {fields}", "danger"))
    for warning in stop.warnings:
        out.append(Badge("warning", _WARNING_WORDS.get(warning.code, warning.code), "warn"))
    if refused:
        out.append(Badge("refused", "refused by the depot", "danger"))
    waiting = [a for a in stop.local if not a.acked]
    if waiting:
        out.append(Badge("pending", f"{ACTION_WORDS[waiting[-1].action]}: pending", "pending"))
    elif stop.local:
        out.append(Badge("sent", f"{ACTION_WORDS[stop.local[-1].action]}: sent", "ok"))
    else:
        status = stop.view.fields.get("status")
        if status is not None and any(c.source == "driver" for c in status.candidates):
            out.append(Badge("sent", "your result: sent", "ok"))
    return tuple(out)


_WARNING_WORDS = {"window": "window missed", "shift-hours": "shift cap", "capacity": "capacity"}


def _window_line(window: Any, zone: tzinfo, now: datetime) -> str:
    words = window_words(window, zone, now)
    return words if words == "no window" else f"window {words}"


def _sequence(stop: RouteStop) -> int | None:
    value = stop.view.value("sequence")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def route_order(stops: Iterable[RouteStop]) -> list[RouteStop]:
    """Stops by their settled ``sequence`` (then the agent's order); unsequenced ones last."""
    indexed = list(enumerate(stops))
    indexed.sort(key=lambda p: (_sequence(p[1]) is None, _sequence(p[1]) or 0, p[0]))
    return [stop for _, stop in indexed]


def route_screen(stops: Sequence[RouteStop], refused: Sequence[RefusedAction], *,
                 now: datetime, zone: tzinfo) -> RouteScreen:
    by_order: dict[str, list[RefusedAction]] = {}
    for r in refused:
        by_order.setdefault(r.order_id, []).append(r)
    rows = []
    for i, stop in enumerate(route_order(stops), start=1):
        view = stop.view
        customer, address = view.value("customer"), view.value("address")
        title = str(customer or address or stop.order_id)
        sub = [str(address)] if customer and address else []
        if title != stop.order_id:
            sub.append(stop.order_id)
        status, meaning = _stop_status(stop)
        eta = _time(view.value("eta"))
        rows.append(StopRow(
            order_id=stop.order_id,
            number=str(i),
            title=title,
            subtitle=" · ".join(sub),
            status=status,
            status_meaning=meaning,
            window=_window_line(view.value("window"), zone, now),
            eta="ETA --:--" if eta is None else f"ETA {_clock_on(eta, zone, now)}",
            badges=_badges(stop, by_order.get(stop.order_id, ())),
        ))
    # refused actions whose order left the route stay in sight, at the end of the list
    on_route = {s.order_id for s in stops}
    for order_id, items in by_order.items():
        if order_id in on_route:
            continue
        rows.append(StopRow(
            order_id=order_id, number="–", title=order_id, subtitle="no longer on your route",
            status=f"{ACTION_WORDS[items[-1].action]}: refused", status_meaning="danger",
            window="", eta="", badges=(Badge("refused", "refused by the depot", "danger"),)))
    counts = [f"{len(stops)} stops"]
    n_conflicts = sum(len(s.conflicts) for s in stops)
    if n_conflicts:
        counts.append(f"{n_conflicts} conflict{'s' if n_conflicts > 1 else ''}")
    held = sum(1 for s in stops if s.hold)
    if held:
        counts.append(f"{held} on hold")
    if refused:
        counts.append(f"{len(refused)} refused")
    return RouteScreen(title="Today's route", rows=tuple(rows), summary=" · ".join(counts))


# -- the stop screen ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionButton:
    action: Literal["arrive", "deliver", "fail", "refuse", "note"]
    label: str
    primary: bool


@dataclass(frozen=True)
class HistoryLine:
    event_id: str
    text: str  # "delivered at 10:42 — pending" / "— sent"
    meaning: Meaning


@dataclass(frozen=True)
class RefusedLine:
    event_id: str
    order_id: str
    text: str  # "delivered at 10:42 was refused by the depot"
    reason: str
    when: str  # "refused 4 min ago"


@dataclass(frozen=True)
class StopScreen:
    order_id: str
    title: str
    status: str
    status_meaning: Meaning
    details: tuple[tuple[str, str], ...]  # (label, text): address, customer, window, ETA, notes
    warnings: tuple[str, ...]
    conflicts: tuple[str, ...]  # one line per contested field, "status: see both sides"
    hold: str | None
    actions: tuple[ActionButton, ...]
    history: tuple[HistoryLine, ...]
    refused: tuple[RefusedLine, ...]


STOP_ACTIONS: tuple[ActionButton, ...] = (
    ActionButton("arrive", "Arrived", True),
    ActionButton("deliver", "Delivered", True),
    ActionButton("fail", "Failed…", False),
    ActionButton("refuse", "Refused by customer", False),
    ActionButton("note", "Note…", False),
)


def _history(local: Sequence[LocalAction], view: Any, zone: tzinfo, now: datetime
             ) -> tuple[HistoryLine, ...]:
    """The driver's actions on this stop: local ones pending or sent, and those the gateway's
    view already holds as the driver's claim (sent: the depot has it)."""
    out = []
    status = view.fields.get("status")
    local_ids = {a.event_id for a in local}
    for c in (status.candidates if status is not None else ()):
        event_id = c.claim_id.removeprefix("driver:").split("#")[0]
        if c.source != "driver" or event_id in local_ids:
            continue
        word = STATUS_WORDS.get(str(c.value), (str(c.value), "ok"))[0]
        out.append(HistoryLine(event_id, f"{word} at {_clock_on(c.as_of, zone, now)} — sent",
                               "ok"))
    for a in local:
        what = ACTION_WORDS.get(a.action, a.action)
        if a.reason:
            what += f" ({a.reason})"
        state: tuple[str, Meaning] = ("sent", "ok") if a.acked else ("pending", "pending")
        out.append(HistoryLine(a.event_id, f"{what} at {_clock_on(a.at, zone, now)} — {state[0]}",
                               state[1]))
    return tuple(out)


def refused_lines(refused: Iterable[RefusedAction], *, now: datetime, zone: tzinfo
                  ) -> tuple[RefusedLine, ...]:
    return tuple(
        RefusedLine(
            event_id=r.event_id,
            order_id=r.order_id,
            text=f"{ACTION_WORDS.get(r.action, r.action)} at {_clock_on(r.at, zone, now)} "
                 f"(order {r.order_id}) was refused by the depot",
            reason=r.reason,
            when=f"refused {ago((now - r.refused_at).total_seconds())}",
        )
        for r in refused
    )


def stop_screen(stop: RouteStop, refused: Sequence[RefusedAction], *, now: datetime,
                zone: tzinfo) -> StopScreen:
    view = stop.view
    status, meaning = _stop_status(stop)
    details: list[tuple[str, str]] = []
    for label, field in (("Address", "address"), ("Customer", "customer")):
        fv = view.fields.get(field)
        details.append((label, _field_text(fv, field, zone, now)))
    details.append(("Window", window_words(view.value("window"), zone, now)))
    eta = _time(view.value("eta"))
    details.append(("Planned arrival", "--:--" if eta is None else _clock_on(eta, zone, now)))
    details.append(("Notes", _field_text(view.fields.get("notes"), "notes", zone, now)))
    note = view.value("driver_note")
    if note:
        details.append(("Your note", str(note)))
    conflicts = tuple(
        f"{field_words(c.field)}: sources disagree — "
        + " / ".join(f"{source_words(k.source)} says "
                     f"{value_words(c.field, k.value, zone, now)}" for k in c.candidates)
        for c in stop.conflicts
    )
    return StopScreen(
        order_id=stop.order_id,
        title=str(view.value("customer") or view.value("address") or stop.order_id),
        status=status,
        status_meaning=meaning,
        details=tuple(details),
        warnings=tuple(w.message for w in stop.warnings),
        conflicts=conflicts,
        hold="On hold — confirm with dispatch before you act" if stop.hold else None,
        actions=STOP_ACTIONS,
        history=_history(stop.local, view, zone, now),
        refused=refused_lines([r for r in refused if r.order_id == stop.order_id],
                              now=now, zone=zone),
    )


def _field_text(fv: FieldView | None, field: str, zone: tzinfo, now: datetime) -> str:
    if fv is None:
        return "(not given)"
    if fv.state == "conflict":
        return "sources disagree (see conflict)"
    if fv.state == "withdrawn":
        return f"no longer in {', '.join(source_words(s) for s in fv.withdrawn)}"
    return value_words(field, fv.value, zone, now)


# -- the conflict screen ------------------------------------------------------------------------


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
        as_of=f"as of {_clock_on(c.as_of, zone, now)}",
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
            as_of=f"as of {_clock_on(s.as_of, zone, now)}",
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


# -- the sync bar -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncBar:
    state: Literal["offline", "syncing", "up to date"]
    headline: str  # "Working offline since 07:45" / "Syncing" / "Up to date"
    meaning: Meaning
    last_sync: str  # "last sync 2 min ago"
    waiting: str  # "3 actions waiting" / "nothing waiting"
    sources: tuple[str, ...]  # "legacy: nightly, as of 00:00 (10 h 41 min ago)"
    zone: str  # "times in Europe/Berlin"


def sync_bar(status: SyncStatus, pending: Sequence[OutboxItem], *, now: datetime,
             zone: tzinfo) -> SyncBar:
    n = len(pending)
    waiting = "nothing waiting" if n == 0 else f"{n} action{'s' if n > 1 else ''} waiting"
    if not status.online:
        since = status.offline_since
        headline = ("Working offline" if since is None
                    else f"Working offline since {_clock_on(since, zone, now)}")
        state: Literal["offline", "syncing", "up to date"] = "offline"
        meaning: Meaning = "warn"
    elif n or status.gateway_online is False:
        state, meaning = "syncing", "pending"
        headline = "Syncing" if status.gateway_online is not False else "Syncing (depot offline)"
    else:
        state, meaning, headline = "up to date", "ok", "Up to date"
    last = ("never synced" if status.last_sync_at is None
            else f"last sync {ago((now - status.last_sync_at).total_seconds())}")
    sources = tuple(
        f"{s.source}: {cadence_words(s.cadence_s)}, "
        + ("as of unknown" if s.as_of is None
           else f"as of {_clock_on(s.as_of, zone, now)} ({ago((now - s.as_of).total_seconds())})")
        for s in status.sources
    )
    return SyncBar(state=state, headline=headline, meaning=meaning, last_sync=last,
                   waiting=waiting, sources=sources, zone=f"times in {zone}")
