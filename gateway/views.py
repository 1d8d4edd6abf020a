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
is kept on the Store, and a batch re-reads and re-checks only the orders it changed, unless a
change moves a route-level aggregate (the first planned arrival), when the whole route is
checked as on a cache miss (a new Store, or another Store wrote routes since: the meta key
``route_checks`` names the last writer's generation). Only the orders whose warnings changed
are compared with ``route_warnings``.
"""

from __future__ import annotations

import datetime as _dt
import json
import uuid
from collections import defaultdict
from collections.abc import Collection, Mapping

from gateway.devicestore import DeviceStore, Entry
from gateway.store import Store
from sync.merge import drivers_of, merge_order
from sync.model import OrderView, Policy, Warning
from sync.rules import RouteCheck, check_inputs


def refresh(store: Store, policy: Policy, now: _dt.datetime, *, batch: int = 2000
            ) -> dict[str, list[Entry]]:
    """Merge the dirty orders; returns the new stream entries per device, to publish.

    Dirty orders are taken ``batch`` at a time, one transaction each, with one route sync per
    driver the batch touched."""
    devices = DeviceStore(store)
    out: dict[str, list[Entry]] = defaultdict(list)
    store.mark_due(now)
    if store.meta("route_warnings") == "unknown":
        _record_warnings(store, devices, policy)
    while True:
        try:
            if not _refresh_batch(store, devices, policy, now, batch, out):
                break
        except BaseException:
            store.route_checks.clear()  # checks of routes the rollback put back
            raise
    return dict(out)


def _refresh_batch(store: Store, devices: DeviceStore, policy: Policy, now: _dt.datetime,
                   batch: int, out: dict[str, list[Entry]]) -> bool:
    """One batch of ``refresh``; False when nothing was dirty."""
    with store.transaction():
        _route_checks(store)
        ids = store.take_dirty(batch)
        if not ids:
            return False
        claims = store.claims_to_merge(ids)
        resolutions = store.resolutions_for(ids)
        states = store.view_states(ids)
        changed: dict[str, set[str]] = defaultdict(set)
        for order_id in ids:
            view = merge_order(order_id, claims.get(order_id, []),
                               resolutions.get(order_id, []), policy, now)
            new = drivers_of(view)
            state = states.get(order_id)
            old: list[str] = [] if state is None else list(json.loads(state[1]))
            if store.put_view(view, new, old=state):
                for driver in {*old, *new}:
                    changed[driver].add(order_id)
                devices.set_route_members(order_id, old, new)
        for driver in sorted(changed):
            synced = _sync_driver(store, devices, driver, policy, now, changed[driver])
            for device, entries in synced.items():
                out[device].extend(entries)
        if changed:
            _routes_written(store)
    return True


def sync_driver(store: Store, driver: str, policy: Policy, now: _dt.datetime
                ) -> dict[str, list[Entry]]:
    """Bring every device of one driver up to date with its whole route (e.g. a new device)."""
    try:
        with store.transaction():
            _route_checks(store)
            synced = _sync_driver(store, DeviceStore(store), driver, policy, now, None)
            _routes_written(store)
            return synced
    except BaseException:
        store.route_checks.clear()
        raise


def _route_checks(store: Store) -> dict[str, RouteCheck]:
    """The Store's kept route checks; dropped when another Store wrote routes since."""
    gen = store.meta("route_checks")
    if gen != store.route_checks_gen:
        store.route_checks.clear()
        store.route_checks_gen = gen
    return store.route_checks


def _routes_written(store: Store) -> None:
    """Name a new generation of routes, of which this Store's checks are (in its transaction)."""
    gen = uuid.uuid4().hex
    store.set_meta("route_checks", gen)
    store.route_checks_gen = gen


def _sync_driver(store: Store, devices: DeviceStore, driver: str, policy: Policy,
                 now: _dt.datetime, changed: Collection[str] | None
                 ) -> dict[str, list[Entry]]:
    """Append to the driver's devices' streams; ``changed``: the orders whose view changed
    (None: offer the whole route, and remove whatever the devices hold beyond it)."""
    bound = devices.of_driver(driver)
    if not bound:
        store.route_checks.pop(driver, None)  # not checked as its route changes
        return {}
    if changed is None or (kept := store.route_checks.get(driver)) is None:
        check = RouteCheck.full(devices.route_rules(driver), policy)
        moved = _record(devices, driver, check.warnings)
    else:
        check, maybe = kept.update(devices.route_rules_of(driver, changed), policy)
        moved = _record(devices, driver, check.warnings, maybe)
    store.route_checks[driver] = check
    warnings = check.warnings
    on_route = check.inputs
    wanted = set(moved) if changed is None else {*changed, *moved}
    offered = _bodies(store, sorted(on_route if changed is None else  # order id order
                                    [o for o in wanted if o in on_route]), warnings)
    gone = [(o, None) for o in sorted(wanted) if o not in on_route]
    out: dict[str, list[Entry]] = {}
    for device in bound:
        changes: list[tuple[str, str | None]]
        if changed is None or devices.bounds(device.device)[1] == 0:
            # the whole route: a device never sent anything gets it even on a partial sync
            if changed is not None:
                offered = _bodies(store, sorted(on_route), warnings)
                changed = None
            changes = list(offered.items())
            changes += [(o, None) for o in sorted(devices.sent(device.device))
                        if o not in on_route]
        else:
            changes = [*offered.items(), *gone]
        entries = devices.append(device.device, changes, now)
        if entries:
            out[device.device] = entries
    return out


def _bodies(store: Store, order_ids: list[str], warnings: Mapping[str, tuple[Warning, ...]]
            ) -> dict[str, str]:
    """The bodies to offer, in route order: the stored view as it is (views are stored
    without warnings, in the wire's form), or with its warnings attached (parsed only then)."""
    stored = store.view_bodies(order_ids)
    out: dict[str, str] = {}
    for order_id in order_ids:
        body, found = stored[order_id], warnings.get(order_id)
        if found:
            view = OrderView.model_validate_json(body).model_copy(update={"warnings": found})
            body = view.model_dump_json(exclude_defaults=True)
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
    store.route_checks.clear()
    with store.transaction():
        for driver in devices.drivers_with_routes():
            _record(devices, driver, check_inputs(devices.route_rules(driver), policy))
        store.set_meta("route_warnings", "known")
