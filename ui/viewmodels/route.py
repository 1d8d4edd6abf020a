"""The route screen as data: each stop's row, status and badges, in route order."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Literal

from agent.model import RefusedAction, RouteStop
from ui.viewmodels.words import (
    ACTION_WORDS,
    STATUS_WORDS,
    Meaning,
    as_time,
    clock_on,
    field_words,
    window_words,
)


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


def stop_status(stop: RouteStop) -> tuple[str, Meaning]:
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
        status, meaning = stop_status(stop)
        eta = as_time(view.value("eta"))
        rows.append(StopRow(
            order_id=stop.order_id,
            number=str(i),
            title=title,
            subtitle=" · ".join(sub),
            status=status,
            status_meaning=meaning,
            window=_window_line(view.value("window"), zone, now),
            eta="ETA --:--" if eta is None else f"ETA {clock_on(eta, zone, now)}",
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
