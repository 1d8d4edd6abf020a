"""From dirty orders to merged views to device streams.

``refresh`` is the one place views change: it merges every order whose claims or resolutions
changed (or whose conflict reached its deadline), stores the view, and for every driver whose
route it touches re-checks the route's rules and appends to each of the driver's devices'
streams what differs from what the device was last sent. An identical view appends nothing.

A route sync is incremental: the rules are checked over the route's stored rule inputs (no view
is parsed), and only the orders that changed in this batch, or whose warnings changed, are
offered to the devices. Every other order's body would be what its devices already hold: its
view did not change and its warnings are the ones recorded as sent (``route_warnings``).
``sync_driver`` (a device newly bound) offers the whole route.

The rule check itself is incremental too: each driver's last check (``sync.rules.RouteCheck``)
is kept per Store (``kept_route_checks``), and a batch re-reads and re-checks only the orders
it changed, unless a change moves a route-level aggregate (the first planned arrival), when
the whole route is checked as on a cache miss (a new Store, or another Store wrote routes
since: the meta key ``route_checks`` names the last writer's generation). Only the orders
whose warnings changed are compared with ``route_warnings``.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
import uuid
import weakref
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from gateway.store.core import Store
from gateway.store.devices import Device, DeviceStore, Entry, body_with_warnings
from gateway.store.setviews import put_new_set_views
from gateway.store.views import SetView, StoredView
from sync.merge import merge_order
from sync.merged import Merged, OneSet, set_drivers
from sync.model import Claim, Policy, Resolution, Warning
from sync.rules import RouteCheck, RuleInputs, check_inputs

REFRESH_PARTS = ("claims", "merge", "put_view", "route sync", "COMMIT")


@dataclass
class RefreshTimer:
    """Wall seconds a refresh spent in each of its steps (``REFRESH_PARTS``), summed over the
    refreshes it is handed to: claims read, merge (serialising included), ``put_views``, the
    route syncs (rule check + stream append), and the COMMITs. A benchmark's public hook."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(REFRESH_PARTS, 0.0))

    def add(self, part: str, since: float) -> float:
        """Add the time from ``since`` (``time.perf_counter()``) to now to ``part``; now."""
        now = time.perf_counter()
        self.seconds[part] += now - since
        return now


def refresh(store: Store, policy: Policy, now: _dt.datetime, *, batch: int = 2000,
            on_batch: Callable[[dict[str, list[Entry]]], None] | None = None,
            on_progress: Callable[[int, int], None] | None = None,
            timer: RefreshTimer | None = None) -> dict[str, list[Entry]]:
    """Merge the dirty orders; returns the new stream entries per device, to publish.

    Dirty orders are taken ``batch`` at a time, one transaction each, with one route sync per
    driver the batch touched, until as many orders as were dirty at the start are merged
    (orders made dirty meanwhile wait for the refresh asked for them). ``on_batch``, if given,
    is handed each batch's entries once the batch is committed (a big export's first changes
    go out while the rest is merged), from within the next batch's transaction: the write
    lock passes from batch to batch, so an ingest writing meanwhile does not cut a big
    refresh into small ones (it writes after). Those entries are not in the returned
    mapping. ``on_progress(merged, total)`` follows each batch (a progress bar). ``timer``, if
    given, sums the time of each step (``RefreshTimer``)."""
    devices = DeviceStore(store)
    out: dict[str, list[Entry]] = defaultdict(list)
    store.mark_due(now)
    if store.meta("route_warnings") == "unknown":
        _record_warnings(store, devices, policy)
    left = total = store.dirty_count()
    if on_progress is not None:
        on_progress(0, total)
    done: dict[str, list[Entry]] = {}  # committed, not yet handed to on_batch
    try:
        while left > 0:
            with store.transaction():
                if done and on_batch is not None:
                    on_batch(done)
                    done = {}
                taken = _refresh_batch(store, devices, policy, now, batch, out, timer)
                committing = time.perf_counter()
            if timer is not None:
                timer.add("COMMIT", committing)
            left -= taken
            if on_progress is not None:
                on_progress(min(total, total - left), total)
            if not taken:
                break
            if on_batch is not None and out:
                done = dict(out)
                out.clear()
    except BaseException:
        _kept(store).checks.clear()  # checks of routes the rollback put back
        raise
    if done and on_batch is not None:
        on_batch(done)
    return dict(out)


def _refresh_batch(store: Store, devices: DeviceStore, policy: Policy, now: _dt.datetime,
                   batch: int, out: dict[str, list[Entry]], timer: RefreshTimer | None) -> int:
    """One batch of ``refresh``, in the caller's transaction; the orders it took (0: none
    was dirty)."""
    _route_checks(store)
    ids = store.take_dirty(batch)
    if not ids:
        return 0
    t = time.perf_counter()
    changed: dict[str, set[str]] = defaultdict(set)
    fresh = put_new_set_views(store, ids)  # a first export's orders, in SQL
    for driver, order_ids in fresh.drivers.items():
        changed[driver] |= order_ids
    taken, ids = len(ids), fresh.rest
    if timer is not None:
        t = timer.add("put_view", t)
    inputs, resolutions, states = ((store.merge_inputs(ids), store.resolutions_for(ids),
                                    store.view_states(ids)) if ids else ({}, {}, {}))
    if timer is not None:
        t = timer.add("claims", t)
    written: dict[str, _Written] = {}
    get_state = states.get
    views: list[tuple[StoredView, tuple[str, str, str | None] | None]] = [
        (_merged(order_id, inputs.get(order_id, []), resolutions, policy, now),
         get_state(order_id)) for order_id in ids]
    if timer is not None:
        t = timer.add("merge", t)
    moved: list[tuple[str, list[str], list[str]]] = []
    for (merged, state), stored in zip(views, store.put_views(views), strict=True):
        if stored:
            order_id, new = merged.order_id, merged.drivers
            old: list[str] = [] if state is None else list(json.loads(state[1]))
            if isinstance(merged, Merged):  # a set view's text is built when read
                written[order_id] = _Written(merged, frozenset(new))
            if old == new:  # usually the same drivers: nothing to write
                for driver in new:
                    changed[driver].add(order_id)
            else:
                for driver in {*old, *new}:
                    changed[driver].add(order_id)
                moved.append((order_id, old, new))
    if moved:
        devices.set_routes_members(moved)
    if timer is not None:
        t = timer.add("put_view", t)
    for device, entries in _sync_drivers(store, devices, changed, policy, now,
                                         written).items():
        out[device].extend(entries)
    if timer is not None:
        timer.add("route sync", t)
    if changed:
        _routes_written(store)
    return taken


def _merged(order_id: str, found: OneSet | list[Claim],
            resolutions: Mapping[str, list[Resolution]], policy: Policy, now: _dt.datetime
            ) -> StoredView:
    """An order's view from its merge inputs (``Store.merge_inputs``)."""
    if isinstance(found, OneSet):
        return SetView(order_id, found.set_id, set_drivers(found.vals))
    return Merged.of(merge_order(order_id, found, resolutions.get(order_id, []), policy, now))


class _Written(NamedTuple):
    """A view this batch stored as text (its body and rule inputs are not read back; a set
    view's are built from its claim set when a device needs them) and its route drivers."""

    view: Merged
    drivers: frozenset[str]


def sync_driver(store: Store, driver: str, policy: Policy, now: _dt.datetime
                ) -> dict[str, list[Entry]]:
    """Bring every device of one driver up to date with its whole route (e.g. a new device)."""
    try:
        with store.transaction():
            _route_checks(store)
            synced = _sync_drivers(store, DeviceStore(store), {driver: None}, policy, now, {})
            _routes_written(store)
            return synced
    except BaseException:
        _kept(store).checks.clear()
        raise


@dataclass
class _KeptChecks:
    """One Store's route checks (driver -> its route's last rule check), while that Store is
    the last to have written routes (``gen``: the meta key ``route_checks`` it last saw)."""

    gen: str | None = None
    checks: dict[str, RouteCheck] = field(default_factory=dict)


_KEPT: weakref.WeakKeyDictionary[Store, _KeptChecks] = weakref.WeakKeyDictionary()


def _kept(store: Store) -> _KeptChecks:
    kept = _KEPT.get(store)
    if kept is None:
        kept = _KEPT[store] = _KeptChecks()
    return kept


def kept_route_checks(store: Store) -> dict[str, RouteCheck]:
    """The route checks kept for this Store (driver -> check), as its last refresh left them."""
    return _kept(store).checks


def _route_checks(store: Store) -> dict[str, RouteCheck]:
    """The Store's kept route checks; dropped when another Store wrote routes since."""
    gen = store.meta("route_checks")
    kept = _kept(store)
    if gen != kept.gen:
        kept.checks.clear()
        kept.gen = gen
    return kept.checks


def _routes_written(store: Store) -> None:
    """Name a new generation of routes, of which this Store's checks are (in its transaction)."""
    gen = uuid.uuid4().hex
    store.set_meta("route_checks", gen)
    _kept(store).gen = gen


def _sync_drivers(store: Store, devices: DeviceStore,
                  changed: Mapping[str, Collection[str] | None], policy: Policy,
                  now: _dt.datetime, written: Mapping[str, _Written]
                  ) -> dict[str, list[Entry]]:
    """Append to the drivers' devices' streams, in driver order, with one statement per kind
    for all of them; ``changed``: driver -> the orders whose view changed (None: offer the
    whole route, and remove whatever the devices hold beyond it); ``written``: the views this
    batch stored (their bodies and rule inputs are not read back)."""
    drivers = sorted(changed)
    bound_of = devices.of_drivers(drivers)
    bounds = devices.bounds_of(d.device for driver in drivers for d in bound_of.get(driver, ()))
    plans: list[tuple[str, list[tuple[str, str | None]]]] = []
    for driver in drivers:
        plans += _plan_driver(store, devices, driver, policy, changed[driver],
                              bound_of.get(driver, []), bounds, written)
    return devices.append_many(plans, now)


def _plan_driver(store: Store, devices: DeviceStore, driver: str, policy: Policy,
                 changed: Collection[str] | None, bound: list[Device],
                 bounds: Mapping[str, tuple[int, int]], written: Mapping[str, _Written]
                 ) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """One driver's part of ``_sync_drivers``: (device, changes to append) per bound device."""
    if not bound:
        _kept(store).checks.pop(driver, None)  # not checked as its route changes
        return []
    if changed is None or (kept := _kept(store).checks.get(driver)) is None:
        check = RouteCheck.full(devices.route_rules(driver), policy)
        moved = _record(devices, driver, check.warnings)
    else:
        check, maybe = kept.update(_route_inputs(devices, driver, changed, written), policy)
        moved = _record(devices, driver, check.warnings, maybe)
    _kept(store).checks[driver] = check
    warnings = check.warnings
    on_route = check.inputs
    wanted = set(moved) if changed is None else {*changed, *moved}
    offered = _bodies(store, sorted(on_route if changed is None else  # order id order
                                    [o for o in wanted if o in on_route]), warnings, written)
    gone: list[tuple[str, str | None]] = [(o, None) for o in sorted(wanted) if o not in on_route]
    plans: list[tuple[str, list[tuple[str, str | None]]]] = []
    for device in bound:
        changes: list[tuple[str, str | None]]
        if changed is None or bounds.get(device.device, (1, 0))[1] == 0:
            # the whole route: a device never sent anything gets it even on a partial sync
            if changed is not None:
                offered = _bodies(store, sorted(on_route), warnings, written)
                changed = None
            changes = list(offered.items())
            changes += [(o, None) for o in sorted(devices.held(device.device))
                        if o not in on_route]
        else:
            changes = [*offered.items(), *gone]
        plans.append((device.device, changes))
    return plans


def _route_inputs(devices: DeviceStore, driver: str, order_ids: Collection[str],
                  written: Mapping[str, _Written]) -> dict[str, RuleInputs | None]:
    """``DeviceStore.route_rules_of``, from the views this batch stored where it can."""
    out: dict[str, RuleInputs | None] = {}
    unread: list[str] = []
    for order_id in order_ids:
        found = written.get(order_id)
        if found is None:
            unread.append(order_id)
        else:
            out[order_id] = found.view.inputs if driver in found.drivers else None
    if unread:
        out.update(devices.route_rules_of(driver, unread))
    return out


def _bodies(store: Store, order_ids: list[str], warnings: Mapping[str, tuple[Warning, ...]],
            written: Mapping[str, _Written]) -> dict[str, str]:
    """The bodies to offer, in route order: the stored view as it is (views are stored
    without warnings, in the wire's form), or with its warnings attached (parsed only then).
    The views this batch stored are not read back."""
    stored = store.view_bodies([o for o in order_ids if o not in written])
    out: dict[str, str] = {}
    for order_id in order_ids:
        found = written.get(order_id)
        body = stored[order_id] if found is None else found.view.body
        attached = warnings.get(order_id)
        if attached:
            body = body_with_warnings(body, attached)
        out[order_id] = body
    return out


def _warnings_text(found: tuple[Warning, ...]) -> str:
    return json.dumps([w.model_dump(mode="json") for w in found], sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False)


def _record(devices: DeviceStore, driver: str, warnings: Mapping[str, tuple[Warning, ...]],
            maybe: Collection[str] | None = None) -> set[str]:
    """Store the route's warnings as sent; returns the orders whose warnings changed.
    ``maybe``: the only orders whose warnings may have (None: any)."""
    if maybe is None:
        new = {o: _warnings_text(w) for o, w in warnings.items() if w}
        old = devices.route_warnings(driver)
    elif not maybe:
        return set()
    else:
        new = {o: _warnings_text(w) for o in maybe if (w := warnings.get(o))}
        old = devices.route_warnings_of(driver, maybe)
    moved: dict[str, str | None] = {o: new.get(o) for o in old.keys() | new.keys()
                                    if old.get(o) != new.get(o)}
    if moved:
        devices.set_route_warnings(driver, moved)
    return set(moved)


def _record_warnings(store: Store, devices: DeviceStore, policy: Policy) -> None:
    """A store from an older gateway: its devices hold the warnings the rules give now (it
    re-sent whole routes); record them as sent, sending nothing."""
    _kept(store).checks.clear()
    with store.transaction():
        for driver in devices.drivers_with_routes():
            _record(devices, driver, check_inputs(devices.route_rules(driver), policy))
        store.set_meta("route_warnings", "known")
