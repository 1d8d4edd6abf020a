"""The wire envelope ``{v, kind, id, origin, hlc, body}`` and its message kinds (DESIGN §4).

All kinds are one discriminated union on ``kind``; ``ENVELOPE`` is the one TypeAdapter that
decodes them. Which topic carries which kind is in ``docs/PROTOCOL.md``.

=================  =====================  ==================================================
kind               direction              body
=================  =====================  ==================================================
view_change        gateway → tablet       one order's new view (or its removal) at ``seq``
view_changes       gateway → tablet       consecutive stream entries in one message
snapshot           gateway → tablet       the whole route at ``seq``
resync             tablet → gateway       "send me everything after ``after``"
applied            tablet → gateway       the last ``seq`` the tablet committed
driver_event       tablet → gateway       a driver's action, with the claims it was based on;
                                          ``dismiss`` names a refused event the driver saw
ack                gateway → tablet       event ids the gateway stored durably (applied), and
                                          ``refused``: stored, not applied, each with its
                                          reason (only to tablets of 0.3.0 or later)
dispatch_command   dispatch → gateway     assign, cancel, resolve, approve, reject
dispatch_reply     gateway → dispatch     ok, or a one-line reason
status             both (retained)        presence, health and per-source freshness
=================  =====================  ==================================================
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    Field,
    JsonValue,
    TypeAdapter,
    field_validator,
    model_validator,
)

from sync.model import Frozen, OrderView

PROTOCOL_VERSION = 1
MAX_ID = 128
_ID = Field(min_length=1, max_length=MAX_ID)


def answer_id(prefix: str, of: str) -> str:
    """The envelope id of a message answering ``of`` (an ack of an event, a reply to a
    command): ``prefix-of``, or, when that is over the id limit (an id of ``of``'s own
    maximum length is), ``prefix-`` and a SHA-256 digest of ``of``: the same for every
    answer to it, so a resent answer keeps its id."""
    plain = f"{prefix}-{of}"
    if len(plain) <= MAX_ID:
        return plain
    return f"{prefix}-{hashlib.sha256(of.encode('utf-8', 'surrogatepass')).hexdigest()}"


class ViewChange(Frozen):
    """Entry ``seq`` of a device's stream: the order's new view, or None when it left the route.

    ``head`` is the stream's last seq when the entry was sent: a receiver whose last applied seq
    stays below it knows entries are missing even when the tail of a burst was dropped.
    """

    seq: int = Field(ge=1)
    order_id: str = _ID
    view: OrderView | None = None
    head: int | None = Field(default=None, ge=1)


MAX_BATCH = 500
"""The most entries one ``view_changes`` message may carry."""


class ViewChanges(Frozen):
    """Consecutive entries of a device's stream in one message: ``entries[i].seq`` is
    ``entries[0].seq + i``. The gateway sends whatever it has queued for a device this way
    (a burst, a replay), so a tablet commits many entries in one wake-up and one transaction.
    ``head`` as in ``ViewChange`` (the entries carry none of their own).
    """

    entries: tuple[ViewChange, ...] = Field(min_length=1, max_length=MAX_BATCH)
    head: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _consecutive(self) -> ViewChanges:
        first = self.entries[0].seq
        for i, entry in enumerate(self.entries):
            if entry.seq != first + i:
                raise ValueError(
                    f"entries[{i}].seq is {entry.seq}, expected {first + i} (consecutive)")
            if entry.head is not None:
                raise ValueError(f"entries[{i}].head: the batch carries the head")
        return self

    @property
    def first(self) -> int:
        return self.entries[0].seq

    @property
    def last(self) -> int:
        return self.entries[-1].seq


MAX_SNAPSHOT_PARTS = 1000
"""The most parts one snapshot may come in."""


class Snapshot(Frozen):
    """The device's whole route as of ``seq``; replaces whatever the tablet held.

    A route too large for one message comes in ``parts`` messages (``part`` 1..parts, all with
    the same ``seq``, each with some of the views): the receiver replaces its route once it
    holds every part, in one transaction, never with some of them.
    """

    seq: int = Field(ge=0)
    views: tuple[OrderView, ...] = ()
    part: int = Field(default=1, ge=1, le=MAX_SNAPSHOT_PARTS)
    parts: int = Field(default=1, ge=1, le=MAX_SNAPSHOT_PARTS)

    @model_validator(mode="after")
    def _part_of_parts(self) -> Snapshot:
        if self.part > self.parts:
            raise ValueError(f"part {self.part} of {self.parts}")
        return self


class Resync(Frozen):
    after: int = Field(ge=0)


class Applied(Frozen):
    seq: int = Field(ge=0)


DriverAction = Literal["arrive", "deliver", "fail", "refuse", "note", "resolve", "dismiss"]


class DriverEvent(Frozen):
    """A driver's action. ``based_on``: the claim ids on screen when the driver tapped.

    For ``resolve``, ``field`` and ``choose`` (a claim id among the conflict's candidates) say
    which side the driver picked; the gateway records it as a resolution by the driver.
    ``dismiss`` (with ``dismisses``: the event id of a refused event of the same device) says
    the driver saw the refusal and its reason; it changes no order.
    """

    event_id: str = _ID
    order_id: str = _ID
    action: DriverAction
    at: AwareDatetime
    reason: str | None = Field(default=None, max_length=200)
    note: str | None = Field(default=None, max_length=2000)
    based_on: tuple[str, ...] = ()
    field: str | None = Field(default=None, max_length=32)
    choose: str | None = Field(default=None, max_length=128)
    dismisses: str | None = Field(default=None, min_length=1, max_length=128)

    @model_validator(mode="after")
    def _dismisses_with_dismiss(self) -> DriverEvent:
        if (self.action == "dismiss") != (self.dismisses is not None):
            raise ValueError("dismisses is required with action dismiss, and only with it")
        return self


class Refusal(Frozen):
    """An event the gateway stored but will not apply, and why (shown to the driver)."""

    event_id: str = _ID
    reason: str = Field(min_length=1, max_length=500)


class Ack(Frozen):
    """Events the gateway handled: ``event_ids`` stored durably (the tablet may forget them);
    ``refused`` turned down, with the reason (the tablet forgets them from its outbox and keeps
    the refusal on screen until the driver dismisses it); ``delayed`` received but held back,
    the device being over its event rate (they stay in the tablet's outbox and are acked once
    handled, about ``retry_after_s`` from now). At least one of the three is not empty."""

    event_ids: tuple[str, ...] = ()
    refused: tuple[Refusal, ...] = ()
    delayed: tuple[str, ...] = ()
    retry_after_s: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _says_something(self) -> Ack:
        if not self.event_ids and not self.refused and not self.delayed:
            raise ValueError("an ack names at least one event (event_ids, refused or delayed)")
        return self


class _Command(Frozen):
    client: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")


class AssignCommand(_Command):
    action: Literal["assign"]
    order_id: str = _ID
    driver: str = _ID
    override: bool = False


class CancelCommand(_Command):
    action: Literal["cancel"]
    order_id: str = _ID
    reason: str = Field(default="", max_length=200)


class ResolveCommand(_Command):
    action: Literal["resolve"]
    order_id: str = _ID
    field: str = Field(min_length=1, max_length=32)
    choose: str = Field(min_length=1, max_length=128, description="a source name or claim id")


class ApproveCommand(_Command):
    action: Literal["approve"]
    proposal_id: str = _ID


class RejectCommand(_Command):
    action: Literal["reject"]
    proposal_id: str = _ID


DispatchCommand = Annotated[
    AssignCommand | CancelCommand | ResolveCommand | ApproveCommand | RejectCommand,
    Field(discriminator="action"),
]


class DispatchReply(Frozen):
    command_id: str = _ID
    ok: bool
    reason: str = Field(default="", max_length=500)
    detail: dict[str, JsonValue] = Field(default_factory=dict)


class SourceFreshness(Frozen):
    """How fresh one source's word is, as the gateway knows it."""

    source: str
    as_of: AwareDatetime | None = None
    cadence_s: int | None = None
    last_run_at: AwareDatetime | None = None
    last_ok_at: AwareDatetime | None = None
    last_error: str | None = None


class Status(Frozen):
    role: Literal["gateway", "device"]
    online: bool
    at: AwareDatetime
    app_version: str = ""
    last_seq: int | None = None
    sources: tuple[SourceFreshness, ...] = ()
    counters: dict[str, int] = Field(default_factory=dict)


class _Envelope(Frozen):
    v: Literal[1]
    id: str = _ID
    origin: str = Field(min_length=1, max_length=64)
    hlc: str = Field(min_length=1, max_length=96)

    @field_validator("v", mode="before")
    @classmethod
    def _not_a_bool(cls, value: object) -> object:
        if isinstance(value, bool):  # JSON true would pass as Literal[1]
            raise ValueError(f"protocol version {value!r} is not {PROTOCOL_VERSION}")
        return value


class ViewChangeMsg(_Envelope):
    kind: Literal["view_change"]
    body: ViewChange


class ViewChangesMsg(_Envelope):
    kind: Literal["view_changes"]
    body: ViewChanges


class SnapshotMsg(_Envelope):
    kind: Literal["snapshot"]
    body: Snapshot


class ResyncMsg(_Envelope):
    kind: Literal["resync"]
    body: Resync


class AppliedMsg(_Envelope):
    kind: Literal["applied"]
    body: Applied


class DriverEventMsg(_Envelope):
    kind: Literal["driver_event"]
    body: DriverEvent


class AckMsg(_Envelope):
    kind: Literal["ack"]
    body: Ack


class DispatchCommandMsg(_Envelope):
    kind: Literal["dispatch_command"]
    body: DispatchCommand


class DispatchReplyMsg(_Envelope):
    kind: Literal["dispatch_reply"]
    body: DispatchReply


class StatusMsg(_Envelope):
    kind: Literal["status"]
    body: Status


Envelope = Annotated[
    ViewChangeMsg
    | ViewChangesMsg
    | SnapshotMsg
    | ResyncMsg
    | AppliedMsg
    | DriverEventMsg
    | AckMsg
    | DispatchCommandMsg
    | DispatchReplyMsg
    | StatusMsg,
    Field(discriminator="kind"),
]

ENVELOPE: TypeAdapter[Envelope] = TypeAdapter(Envelope)
KINDS = (
    "view_change",
    "view_changes",
    "snapshot",
    "resync",
    "applied",
    "driver_event",
    "ack",
    "dispatch_command",
    "dispatch_reply",
    "status",
)
