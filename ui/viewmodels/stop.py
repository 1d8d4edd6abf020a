"""The stop screen as data: fields, warnings, actions, the history of what the driver did
(pending, then sent), and refused actions with their reasons until dismissed."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Literal

from agent.model import LocalAction, RefusedAction, RouteStop
from sync.model import FieldView
from ui.viewmodels.route import stop_status
from ui.viewmodels.words import (
    ACTION_WORDS,
    STATUS_WORDS,
    Meaning,
    ago,
    as_time,
    clock_on,
    field_words,
    source_words,
    value_words,
    window_words,
)


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
        out.append(HistoryLine(event_id, f"{word} at {clock_on(c.as_of, zone, now)} — sent",
                               "ok"))
    for a in local:
        what = ACTION_WORDS.get(a.action, a.action)
        if a.reason:
            what += f" ({a.reason})"
        state: tuple[str, Meaning] = ("sent", "ok") if a.acked else ("pending", "pending")
        out.append(HistoryLine(a.event_id, f"{what} at {clock_on(a.at, zone, now)} — {state[0]}",
                               state[1]))
    return tuple(out)


def refused_lines(refused: Iterable[RefusedAction], *, now: datetime, zone: tzinfo
                  ) -> tuple[RefusedLine, ...]:
    return tuple(
        RefusedLine(
            event_id=r.event_id,
            order_id=r.order_id,
            text=f"{ACTION_WORDS.get(r.action, r.action)} at {clock_on(r.at, zone, now)} "
                 f"(order {r.order_id}) was refused by the depot",
            reason=r.reason,
            when=f"refused {ago((now - r.refused_at).total_seconds())}",
        )
        for r in refused
    )


def stop_screen(stop: RouteStop, refused: Sequence[RefusedAction], *, now: datetime,
                zone: tzinfo) -> StopScreen:
    view = stop.view
    status, meaning = stop_status(stop)
    details: list[tuple[str, str]] = []
    for label, field in (("Address", "address"), ("Customer", "customer")):
        fv = view.fields.get(field)
        details.append((label, _field_text(fv, field, zone, now)))
    details.append(("Window", window_words(view.value("window"), zone, now)))
    eta = as_time(view.value("eta"))
    details.append(("Planned arrival", "--:--" if eta is None else clock_on(eta, zone, now)))
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
