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

The layer is split by screen: ``words`` (meanings, vocabularies, times and ages in words),
``route``, ``stop`` (with refused actions), ``conflict`` and ``syncbar``; this package exports
all of them, so a screen reads ``vm.route_screen(...)``.
"""

from __future__ import annotations

from ui.viewmodels.conflict import (
    CandidateCard,
    ConflictCard,
    ConflictScreen,
    conflict_card,
    conflict_screen,
    preference_note,
)
from ui.viewmodels.route import (
    Badge,
    RouteScreen,
    StopRow,
    route_order,
    route_screen,
    stop_status,
)
from ui.viewmodels.stop import (
    STOP_ACTIONS,
    ActionButton,
    HistoryLine,
    RefusedLine,
    StopScreen,
    refused_lines,
    stop_screen,
)
from ui.viewmodels.syncbar import (
    SyncBar,
    sync_bar,
)
from ui.viewmodels.words import (
    ACTION_WORDS,
    AGE_REFRESH_S,
    FAIL_REASONS,
    FIELD_WORDS,
    SOURCE_WORDS,
    STATUS_WORDS,
    Meaning,
    ago,
    as_time,
    cadence_words,
    clock,
    clock_on,
    field_words,
    source_words,
    value_words,
    window_words,
)

__all__ = [
    "ACTION_WORDS",
    "AGE_REFRESH_S",
    "FAIL_REASONS",
    "FIELD_WORDS",
    "SOURCE_WORDS",
    "STATUS_WORDS",
    "STOP_ACTIONS",
    "ActionButton",
    "Badge",
    "CandidateCard",
    "ConflictCard",
    "ConflictScreen",
    "HistoryLine",
    "Meaning",
    "RefusedLine",
    "RouteScreen",
    "StopRow",
    "StopScreen",
    "SyncBar",
    "ago",
    "as_time",
    "cadence_words",
    "clock",
    "clock_on",
    "conflict_card",
    "conflict_screen",
    "field_words",
    "preference_note",
    "refused_lines",
    "route_order",
    "route_screen",
    "source_words",
    "stop_screen",
    "stop_status",
    "sync_bar",
    "value_words",
    "window_words",
]
