"""From dirty orders to merged views to device streams.

``refresh`` is the one place views change: it merges every order whose claims or resolutions
changed (or whose conflict reached its deadline), stores the view, and for every driver whose
route it touches re-checks the route's rules and appends to each of the driver's devices'
streams what differs from what the device was last sent. An identical view appends nothing.
"""

from __future__ import annotations

import datetime as _dt
from collections import defaultdict

from gateway.devicestore import DeviceStore, Entry
from gateway.store import Store
from sync.merge import drivers_of, merge_order
from sync.model import OrderView, Policy
from sync.rules import check_route, with_warnings


def refresh(store: Store, policy: Policy, now: _dt.datetime, *, batch: int = 2000
            ) -> dict[str, list[Entry]]:
    """Merge the dirty orders; returns the new stream entries per device, to publish."""
    devices = DeviceStore(store)
    out: dict[str, list[Entry]] = defaultdict(list)
    store.mark_due(now)
    while True:
        with store.transaction():
            ids = store.take_dirty(batch)
            if not ids:
                break
            claims = store.claims_for(ids)
            resolutions = store.resolutions_for(ids)
            affected: set[str] = set()
            for order_id in ids:
                view = merge_order(order_id, claims.get(order_id, []),
                                   resolutions.get(order_id, []), policy, now)
                new = drivers_of(view)
                old = store.view_drivers(order_id)
                if store.put_view(view, new):
                    affected.update(old, new)
                    devices.set_route_members(order_id, old, new)
            for driver in sorted(affected):
                for device, entries in _sync_driver(store, devices, driver, policy, now).items():
                    out[device].extend(entries)
    return dict(out)


def sync_driver(store: Store, driver: str, policy: Policy, now: _dt.datetime
                ) -> dict[str, list[Entry]]:
    """Bring every device of one driver up to date with its route (e.g. a new device)."""
    with store.transaction():
        return _sync_driver(store, DeviceStore(store), driver, policy, now)


def _sync_driver(store: Store, devices: DeviceStore, driver: str, policy: Policy,
                 now: _dt.datetime) -> dict[str, list[Entry]]:
    bound = devices.of_driver(driver)
    if not bound:
        return {}
    route_ids = devices.route(driver)
    stored = store.view_bodies(route_ids)
    route = [OrderView.model_validate_json(stored[o]) for o in route_ids if o in stored]
    warnings = check_route(route, policy)
    # A view without warnings is sent as stored (the same JSON ``with_warnings`` would dump);
    # only views that gain or lose warnings are copied and dumped again.
    bodies = {v.order_id: stored[v.order_id] for v in route
              if not v.warnings and not warnings.get(v.order_id)}
    bodies.update((v.order_id, v.model_dump_json())
                  for v in with_warnings([v for v in route if v.order_id not in bodies],
                                         warnings))
    bodies = {o: bodies[o] for o in route_ids if o in bodies}  # route order, as before
    out: dict[str, list[Entry]] = {}
    for device in bound:
        sent = devices.sent(device.device)
        changes: list[tuple[str, str | None]] = list(bodies.items())
        changes += [(o, None) for o in sorted(sent) if o not in bodies]
        entries = devices.append(device.device, changes, now)
        if entries:
            out[device.device] = entries
    return out
