"""Event ids are per device: de-duplication is keyed by (device, event id), after the
device/route check, so one tablet cannot squat another's event ids and have its real events
acked but dropped. And the denials that held before stay: events from the wrong origin or
about orders off the route are refused and counted, each with its positive control."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from gateway.store.core import Store
from gateway.store.devices import DeviceStore
from sync.topics import Topics
from tests.broker import MqttProbe
from tests.security.depot import DEPOT, SecureDepot, Tablet

pytestmark = pytest.mark.broker

TOPICS = Topics(DEPOT)


def _event(tablet: Tablet, event_id: str, order_id: str, *, origin: str | None = None,
           action: str = "arrive") -> bytes:
    who = origin or tablet.device
    return json.dumps({
        "v": 1, "kind": "driver_event", "id": event_id, "origin": who,
        "hlc": f"{int(dt.datetime.now(dt.UTC).timestamp() * 1000):015d}-000000-{who}",
        "body": {"event_id": event_id, "order_id": order_id, "action": action,
                 "at": dt.datetime.now(dt.UTC).isoformat()}}).encode()


def _acked(probe: MqttProbe, event_id: str) -> bool:
    for message in probe.drain(quiet=0.3, first=5):
        if event_id in json.loads(message.payload)["body"]["event_ids"]:
            return True
    return False


def _route(depot: SecureDepot, driver: str) -> list[str]:
    with Store(depot.cfg.db_path) as store:
        return DeviceStore(store).route(driver)


def _outcome(depot: SecureDepot, device: str, event_id: str) -> str | None:
    with Store(depot.cfg.db_path) as store:
        return DeviceStore(store).event_outcome(device, event_id)


def _driver_status(depot: SecureDepot, order_id: str) -> object:
    with Store(depot.cfg.db_path) as store:
        view = store.view(order_id)
    assert view is not None
    return [c.value for c in view.fields["status"].candidates if c.source == "driver"]


def test_an_event_id_squatted_by_another_device_does_not_drop_a_real_event(
        secure_depot: SecureDepot) -> None:
    victim = secure_depot.add("tab-a", "DRV-001")
    thief = secure_depot.add("tab-b", "DRV-002")
    secure_depot.start()
    victims_order = _route(secure_depot, "DRV-001")[0]
    with secure_depot.login(thief) as attacker, secure_depot.login(victim) as own:
        attacker.subscribe(TOPICS.acks(thief.device))
        own.subscribe(TOPICS.acks(victim.device))
        # the thief uses the id first, about the victim's order (refused: not on its route)
        attacker.publish(TOPICS.outbox(thief.device), _event(thief, "ev-1", victims_order))
        assert _acked(attacker, "ev-1")
        assert str(_outcome(secure_depot, thief.device, "ev-1")).startswith("refused")
        # the victim's real event with the same id is applied, not dropped as a duplicate
        own.publish(TOPICS.outbox(victim.device), _event(victim, "ev-1", victims_order))
        assert _acked(own, "ev-1")
    assert _outcome(secure_depot, victim.device, "ev-1") == "applied"
    assert _driver_status(secure_depot, victims_order) == ["arrived"]


def test_a_resent_event_is_still_a_duplicate_of_its_own_device(secure_depot: SecureDepot
                                                               ) -> None:
    tablet = secure_depot.add("tab-a", "DRV-001")
    runner = secure_depot.start()
    order = _route(secure_depot, "DRV-001")[0]
    with secure_depot.login(tablet) as own:
        own.subscribe(TOPICS.acks(tablet.device))
        for _ in range(2):
            own.publish(TOPICS.outbox(tablet.device), _event(tablet, "ev-9", order))
            assert _acked(own, "ev-9")
    assert runner.service is not None
    counters = runner.service.call(lambda store: DeviceStore(store).counters())
    assert counters.get("duplicate_events") == 1 and counters.get("driver_events") == 1


def test_an_event_about_an_order_off_the_route_is_refused_and_on_it_applied(
        secure_depot: SecureDepot) -> None:
    tablet = secure_depot.add("tab-a", "DRV-001")
    secure_depot.start()
    mine, other = _route(secure_depot, "DRV-001")[0], _route(secure_depot, "DRV-002")[0]
    with secure_depot.login(tablet) as own:
        own.subscribe(TOPICS.acks(tablet.device))
        own.publish(TOPICS.outbox(tablet.device), _event(tablet, "ev-off", other))
        own.publish(TOPICS.outbox(tablet.device), _event(tablet, "ev-on", mine))
        assert _acked(own, "ev-on")
    assert str(_outcome(secure_depot, tablet.device, "ev-off")).startswith("refused")
    assert _driver_status(secure_depot, other) == []
    assert _outcome(secure_depot, tablet.device, "ev-on") == "applied"  # control


def test_an_event_with_another_origin_is_refused_and_with_its_own_applied(
        secure_depot: SecureDepot) -> None:
    tablet = secure_depot.add("tab-a", "DRV-001")
    secure_depot.add("tab-b", "DRV-001")
    runner = secure_depot.start()
    order = _route(secure_depot, "DRV-001")[0]
    with secure_depot.login(tablet) as own:
        own.subscribe(TOPICS.acks(tablet.device))
        own.publish(TOPICS.outbox(tablet.device),
                    _event(tablet, "ev-spoof", order, origin="tab-b"))
        own.publish(TOPICS.outbox(tablet.device), _event(tablet, "ev-real", order))
        assert _acked(own, "ev-real")  # control
    assert _outcome(secure_depot, "tab-b", "ev-spoof") is None
    assert _outcome(secure_depot, tablet.device, "ev-spoof") is None
    assert runner.service is not None
    counters = runner.service.call(lambda store: DeviceStore(store).counters())
    assert counters.get("unauthorized_messages", 0) >= 1
