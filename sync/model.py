"""The core model: sources, claims, resolutions, and the views merged from them (DESIGN §3).

Every model is frozen and forbids unknown fields. Values are plain JSON values; two values agree
when their canonical JSON text is equal (``canonical``), so ``{"a": 1, "b": 2}`` and
``{"b": 2, "a": 1}`` agree and ``1`` and ``"1"`` do not.

Times are timezone-aware. Ages are never stored in a view (a view must not change as the clock
ticks); screens compute them from ``as_of`` with ``age_seconds``.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue

SOURCE_KINDS = ("legacy", "dispatch", "optimizer", "driver")
"""The sources DESIGN §3 names; more may be configured (a source name is any short word)."""

SourceMode = Literal["live", "shadow", "approve", "auto"]
FieldState = Literal["agreed", "resolved", "conflict", "withdrawn"]

_NAME = r"^[a-z][a-z0-9_-]{0,31}$"


class Frozen(BaseModel):
    """Base of every crossdock model: immutable, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def canonical(value: JsonValue) -> str:
    """The canonical JSON text of a value: the form in which two values are compared."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_M = TypeVar("_M", bound=BaseModel)
_TEMPLATES: dict[type[BaseModel], tuple[dict[str, Any], tuple[str, ...], tuple[str, ...]]] = {}
_new = object.__new__
_set = object.__setattr__


def trusted(cls: type[_M], **values: Any) -> _M:
    """``cls(**values)`` without validation, for values that are already valid: read back from
    our own store, or taken from models that were validated (a merge builds its views from
    validated claims). Like ``model_construct`` (same ``__dict__`` in field order, same
    ``model_fields_set``, so the model compares equal and serialises byte for byte as the
    validated one) but cheaper: validation is skipped, not replaced by Python work.

    Only for models without private attributes or validators that change values; every
    default must be immutable (shared). A missing required field or an unknown name raises.
    """
    known = _TEMPLATES.get(cls)
    if known is None:
        fields = cls.model_fields
        known = ({name: info.default for name, info in fields.items()},
                 tuple(name for name, info in fields.items() if info.is_required()),
                 tuple(fields))
        _TEMPLATES[cls] = known
    template, required, names = known
    if tuple(values) == names:
        data = values  # every field, in declaration order: the (fresh) kwargs are the dict
    else:
        data = template.copy()
        data.update(values)  # keys already in the template keep their (declaration) order
        if len(data) != len(template):
            raise TypeError(
                f"{cls.__name__}: unknown fields {sorted(data.keys() - template.keys())}")
        for name in required:
            if name not in values:
                raise TypeError(f"{cls.__name__}: {name} is required")
    model = _new(cls)
    _set(model, "__dict__", data)
    _set(model, "__pydantic_fields_set__", set(values))
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model


def age_seconds(as_of: datetime, now: datetime) -> float:
    """How old a value known at ``as_of`` is at ``now`` (never negative: clocks drift)."""
    return max(0.0, (now - as_of).total_seconds())


class Source(Frozen):
    """A configured source of claims and how its values reach the views.

    ``mode`` is ``live`` for sources whose claims always count (legacy, dispatch, driver); an
    optimizer's proposals are ``shadow`` (compared, never sent), ``approve`` (held until dispatch
    approves, or the window ends) or ``auto``. ``cadence_s`` is how often the source can know
    something new (a nightly export: 86400): the most staleness that is still honest.
    """

    name: str = Field(pattern=_NAME)
    mode: SourceMode = "live"
    cadence_s: int | None = Field(default=None, ge=1)
    approval_window_s: int = Field(default=1800, ge=1)


class Claim(Frozen):
    """One source's statement about one field of one order.

    ``present=False`` is the claim "no longer in this source's export": the source withdraws its
    statement. It is never read as a cancellation. ``based_on`` names the claim ids the author
    was looking at (a driver's tap, a dispatcher's command); a legacy export row has none.
    ``hlc`` orders one source's claims; the latest by ``(hlc, claim_id)`` is the source's
    current statement.
    """

    claim_id: str = Field(min_length=1, max_length=128)
    order_id: str = Field(min_length=1, max_length=64)
    field: str = Field(pattern=_NAME)
    value: JsonValue = None
    present: bool = True
    source: str = Field(pattern=_NAME)
    source_rev: str = Field(default="", max_length=128)
    as_of: AwareDatetime
    received_at: AwareDatetime
    based_on: tuple[str, ...] = ()
    hlc: str = Field(min_length=1, max_length=96)


class Resolution(Frozen):
    """A person's choice among the candidates of one conflict.

    It settles the disagreement among exactly the claims in ``seen``: a later claim that differs
    from the chosen value re-opens the conflict, a later claim that agrees keeps it closed.
    ``override`` marks a dispatch command that was a claim and a resolution in one.
    """

    resolution_id: str = Field(min_length=1, max_length=128)
    order_id: str = Field(min_length=1, max_length=64)
    field: str = Field(pattern=_NAME)
    chosen_claim_id: str = Field(min_length=1, max_length=128)
    value: JsonValue = None
    seen: tuple[str, ...]
    by: str = Field(min_length=1, max_length=64)
    at: AwareDatetime
    hlc: str = Field(min_length=1, max_length=96)
    override: bool = False
    note: str = Field(default="", max_length=500)


class Candidate(Frozen):
    """One side of a field's value: what a source says, and since when it knows it."""

    source: str
    value: JsonValue = None
    as_of: AwareDatetime
    claim_id: str
    received_at: AwareDatetime


class StaleCandidate(Frozen):
    """A value superseded by a claim made later with knowledge of it; shown as stale."""

    source: str
    value: JsonValue = None
    as_of: AwareDatetime
    claim_id: str
    superseded_by: str
    rule: str


class Conflict(Frozen):
    """Live sources disagree about one field, and no resolution covers their claims."""

    order_id: str
    field: str
    opened_at: AwareDatetime
    deadline: AwareDatetime
    escalated: bool = False
    candidates: tuple[Candidate, ...]


class FieldView(Frozen):
    """The view of one field: a value (agreed or resolved), a conflict, or withdrawn.

    ``candidates`` lists every live source's current claim in every state, so a screen can show
    who agrees; ``stale`` the values superseded by later knowledge; ``withdrawn`` the sources
    whose latest word is that the order is no longer in their export.
    """

    field: str
    state: FieldState
    value: JsonValue = None
    candidates: tuple[Candidate, ...] = ()
    stale: tuple[StaleCandidate, ...] = ()
    withdrawn: tuple[str, ...] = ()
    resolution_id: str | None = None
    resolved_by: str | None = None
    override: bool = False
    conflict: Conflict | None = None


WarningCode = Literal["shift-hours", "window", "capacity"]


class Warning(Frozen):
    """A rule check that failed on a driver's route; shown beside the stop."""

    code: WarningCode
    order_id: str
    message: str
    field: str | None = None


class OrderView(Frozen):
    """Everything a screen shows about one order: each field's view, hold, warnings.

    ``hold`` is the safe default once a conflict passes its escalation deadline: "hold — confirm
    with dispatch", never an automatic re-route.
    """

    order_id: str
    fields: dict[str, FieldView]
    hold: bool = False
    warnings: tuple[Warning, ...] = ()

    def value(self, field: str) -> JsonValue:
        """The field's settled value, or None when absent, withdrawn or in conflict."""
        view = self.fields.get(field)
        if view is None or view.state in ("conflict", "withdrawn"):
            return None
        return view.value

    def conflicts(self) -> tuple[Conflict, ...]:
        return tuple(v.conflict for v in self.fields.values() if v.conflict is not None)


class SupersessionRule(Frozen):
    """A named, configured rule by which a newer claim makes an older one stale.

    A live claim from ``older`` is stale when a live claim from ``newer`` on the same field (or
    any field, when ``field`` is None) has a later ``as_of`` and, when ``values`` is not empty,
    one of those values. Shown on screen under ``name``.
    """

    name: str = Field(pattern=_NAME)
    field: str | None = None
    newer: str = Field(pattern=_NAME)
    older: str = Field(pattern=_NAME)
    values: tuple[JsonValue, ...] = ()


DEFAULT_RULES = (
    SupersessionRule(
        name="driver-outcome-over-older-export",
        field="status",
        newer="driver",
        older="legacy",
        values=("arrived", "delivered", "failed", "refused"),
    ),
)


class Policy(Frozen):
    """The merge and rule-check settings; loaded from the gateway's TOML."""

    escalate_after: timedelta = timedelta(minutes=30)
    rules: tuple[SupersessionRule, ...] = DEFAULT_RULES
    shift_cap: timedelta = timedelta(hours=10)
    service_time: timedelta = timedelta(minutes=0)
