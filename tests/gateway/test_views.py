"""Route syncs are incremental: after any refresh, the devices hold what a full sync gives."""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.store.core import Store
from gateway.store.devices import DeviceStore
from gateway.store.sql import text_digest
from gateway.streams.views import kept_route_checks, refresh, sync_driver
from sync.model import OrderView, Policy
from sync.rules import check_route, with_warnings
from tests.sync.factories import T0, at

POLICY = Policy(shift_cap=timedelta(hours=2))
ORDERS = [f"O{i}" for i in range(5)]
DEVICES = {"t7": "7", "t12a": "12", "t12b": "12"}

_change = st.tuples(
    st.sampled_from(ORDERS),
    st.sampled_from(["legacy", "legacy", "legacy", "dispatch"]),  # mostly settled values
    st.one_of(
        st.tuples(st.just("driver"), st.sampled_from(["7", "12"])),
        st.tuples(st.just("eta"), st.sampled_from([0, 30, 90, 150, 200]).map(
            lambda m: (T0 + timedelta(minutes=m)).isoformat())),
        st.tuples(st.just("window"), st.just({"start": T0.isoformat(),
                                              "end": at(60).isoformat()})),
    ),
)


def _put(store: Store, n: int, change: tuple) -> None:
    order_id, source, (field, value) = change
    with store.transaction():
        store.add_claim_set(set_id=f"{source}:{n}:{order_id}", source=source, order_id=order_id,
                            vals={field: value}, as_of=at(n), received_at=at(n),
                            hlc=store.next_hlc(at(n)))


def _expected(store: Store, driver: str) -> dict[str, str]:
    devices = DeviceStore(store)
    route = list(store.views(devices.route(driver)).values())
    shown = with_warnings(route, check_route(route, POLICY))
    return {v.order_id: v.model_dump_json(exclude_defaults=True) for v in shown}


def _eta(minutes: int) -> tuple[str, str]:
    return ("eta", (T0 + timedelta(minutes=minutes)).isoformat())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_change, min_size=1, max_size=4), min_size=1, max_size=6))
@example([  # O1 moves later: the shift starts later and O0, unchanged, loses its warning
    [("O0", "legacy", ("driver", "7")), ("O0", "legacy", _eta(150)),
     ("O1", "legacy", ("driver", "7")), ("O1", "legacy", _eta(0))],
    [("O1", "legacy", _eta(200))],
])
def test_after_any_refresh_a_full_sync_has_nothing_to_add(batches):
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "g.sqlite") as store:
        devices = DeviceStore(store)
        for device, driver in DEVICES.items():
            with store.transaction():
                devices.add(device, driver, "pw", T0)
            sync_driver(store, driver, POLICY, T0)
        n = 0
        for batch in batches:
            for change in batch:
                n += 1
                _put(store, n, change)
            refresh(store, POLICY, at(n), batch=3)  # several batches per refresh, too
            for device, driver in DEVICES.items():
                assert sync_driver(store, driver, POLICY, at(n)) == {}
                sent = devices.sent(device)
                assert {o: OrderView.model_validate_json(b) for o, b in sent.items()} == {
                    o: OrderView.model_validate_json(b)
                    for o, b in _expected(store, driver).items()}


def _route_with_a_warning(store: Store) -> tuple[DeviceStore, dict[str, str]]:
    """Device t7 of driver 7, sent O0 (with a shift-hours warning) and O1."""
    devices = DeviceStore(store)
    with store.transaction():
        devices.add("t7", "7", "pw", T0)
    for n, change in enumerate([("O0", "legacy", ("driver", "7")),
                                ("O0", "legacy", _eta(150)),
                                ("O1", "legacy", ("driver", "7")),
                                ("O1", "legacy", _eta(0))], start=1):
        _put(store, n, change)
    refresh(store, POLICY, at(5))
    return devices, devices.sent("t7")


def test_a_store_from_an_older_gateway_is_migrated_without_resending(tmp_path):
    path = tmp_path / "g.sqlite"
    with Store(path) as store:
        devices, sent = _route_with_a_warning(store)
        # as an older gateway left it: no rule inputs, no one-set views, no record of the
        # warnings sent
        assert store.conn.execute("SELECT count(*) FROM views WHERE one_set IS NULL "
                                  "AND body != ''").fetchone() == (2,)
        store.conn.execute("ALTER TABLE views DROP COLUMN rules")
        store.conn.execute("ALTER TABLE views DROP COLUMN one_set")
        store.conn.execute("DROP TABLE route_warnings")
    with Store(path) as store:
        devices = DeviceStore(store)
        assert store.view_rules(["O0"]) == {"O0": {"eta": _eta(150)[1]}}  # filled in
        assert store.meta("route_warnings") == "unknown"
        assert refresh(store, POLICY, at(6)) == {}
        assert set(devices.route_warnings("7")) == {"O0"}
        assert devices.sent("t7") == sent
        _put(store, 7, ("O1", "legacy", _eta(200)))  # O0 loses its warning
        entries = refresh(store, POLICY, at(7))
        assert [e.order_id for e in entries["t7"]] == ["O0", "O1"]
        assert sync_driver(store, "7", POLICY, at(8)) == {}


def test_kept_route_checks_are_dropped_when_another_store_wrote_routes(tmp_path):
    path = tmp_path / "g.sqlite"
    with Store(path) as a, Store(path) as b:
        with a.transaction():
            DeviceStore(a).add("t7", "7", "pw", T0)
        for n, change in enumerate([("O0", "legacy", ("driver", "7")),
                                    ("O0", "legacy", _eta(150)),
                                    ("O1", "legacy", ("driver", "7")),
                                    ("O1", "legacy", _eta(0))], start=1):
            _put(a, n, change)
        refresh(a, POLICY, at(5))
        assert "7" in kept_route_checks(a) and set(DeviceStore(a).route_warnings("7")) == {"O0"}
        _put(b, 6, ("O1", "legacy", _eta(200)))  # the shift starts later: O0 loses its warning
        refresh(b, POLICY, at(6))
        assert DeviceStore(b).route_warnings("7") == {}
        _put(a, 7, ("O0", "legacy", _eta(160)))  # a's kept check still has O1 at 0
        refresh(a, POLICY, at(7))
        assert DeviceStore(a).route_warnings("7") == {}
        assert sync_driver(a, "7", POLICY, at(8)) == {}
        assert sync_driver(b, "7", POLICY, at(8)) == {}


def test_a_refresh_hands_on_each_batch_once_it_is_committed(tmp_path):
    with Store(tmp_path / "g.sqlite") as store:
        devices = DeviceStore(store)
        with store.transaction():
            devices.add("t7", "7", "pw", T0)
        sync_driver(store, "7", POLICY, T0)
        for n, order_id in enumerate(ORDERS, start=1):
            _put(store, n, (order_id, "legacy", ("driver", "7")))
        handed: list[tuple[list[int], int]] = []

        def on_batch(entries):  # what a reader of the store sees when a batch is handed on
            with Store(tmp_path / "g.sqlite") as reader:
                committed = DeviceStore(reader).bounds("t7")[1]
            handed.append(([e.seq for e in entries["t7"]], committed))

        assert refresh(store, POLICY, at(9), batch=2, on_batch=on_batch) == {}
        assert handed == [([1, 2], 2), ([3, 4], 4), ([5], 5)]


def test_a_store_that_kept_copies_of_sent_bodies_keeps_their_digests(tmp_path):
    path = tmp_path / "g.sqlite"
    with Store(path) as store:
        devices, sent = _route_with_a_warning(store)
        assert any('"warnings"' in body for body in sent.values())  # O0's is rebuilt with them
        # as an older gateway kept it: a copy of each body sent
        store.conn.execute("DROP TABLE device_orders")
        store.conn.execute("CREATE TABLE device_orders (device TEXT NOT NULL, order_id TEXT "
                           "NOT NULL, body TEXT NOT NULL, PRIMARY KEY (device, order_id)) "
                           "WITHOUT ROWID")
        store.conn.executemany("INSERT INTO device_orders VALUES('t7', ?, ?)", sent.items())
    with Store(path) as store:
        devices = DeviceStore(store)
        assert devices.sent("t7") == sent
        assert sync_driver(store, "7", POLICY, at(6)) == {}  # nothing is sent again
        assert refresh(store, POLICY, at(6)) == {}


def test_a_snapshot_records_what_it_sends(tmp_path):
    """A device that holds other bodies than its route's (bound to another driver, not synced
    since) is recorded to hold what its snapshot sends: a later view equal to what it held
    before is not taken for one it has."""
    with Store(tmp_path / "g.sqlite") as store:
        devices = DeviceStore(store)
        with store.transaction():
            devices.add("t7", "7", "pw", T0)
        _put(store, 1, ("O0", "legacy", ("driver", "7")))
        _put(store, 2, ("O0", "legacy", _eta(30)))
        refresh(store, POLICY, at(3))
        before = devices.held("t7")["O0"]
        _put(store, 3, ("O0", "legacy", _eta(90)))
        with store.transaction():  # the view moved on without the device (as if unbound)
            store.conn.execute("DELETE FROM dirty")
            store.put_views([(store_merged(store, "O0"), None)])
        assert devices.held("t7")["O0"] == before
        with store.transaction():
            _seq, bodies = devices.snapshot("t7")
        assert [OrderView.model_validate_json(b).value("eta") for b in bodies] == [_eta(90)[1]]
        assert devices.held("t7") == {"O0": text_digest(bodies[0])}  # no longer ``before``
        assert sync_driver(store, "7", POLICY, at(5)) == {}


def store_merged(store: Store, order_id: str):
    from sync.merge import merge_order
    from sync.merged import Merged

    claims = store.claims_to_merge([order_id])[order_id]
    return Merged.of(merge_order(order_id, claims, [], POLICY, at(3)))


def test_a_one_set_view_is_stored_as_its_claim_set_and_read_as_the_merge_writes_it(tmp_path):
    from sync.merge import merge_order
    from sync.merged import Merged
    from sync.rules import rule_inputs

    vals = {"driver": "7", "eta": _eta(30)[1], "load": 12.5, "sequence": 3, "notes": "gate 4",
            "window": {"start": T0.isoformat(), "end": at(60).isoformat()}, "status": None}
    with Store(tmp_path / "g.sqlite") as store:
        devices = DeviceStore(store)
        with store.transaction():
            devices.add("t7", "7", "pw", T0)
            store.add_claim_set(set_id="legacy:1:A", source="legacy", order_id="A", vals=vals,
                                as_of=at(1), received_at=at(2), hlc=store.next_hlc(at(2)))
        entries = refresh(store, POLICY, at(3))
        claims = store.claims_to_merge(["A"])["A"]
        want = Merged.of(merge_order("A", claims, [], POLICY, at(3)))
        # stored as a reference to its claim set, nothing of the text
        assert store.conn.execute("SELECT body, one_set, rules, digest FROM views").fetchall() \
            == [("", "legacy:1:A", None, "set:legacy:1:A")]
        assert store.view_bodies(["A"]) == {"A": want.body}
        assert store.view("A") == OrderView.model_validate_json(want.body)
        assert store.view_rules(["A"]) == {"A": want.inputs} == {"A": rule_inputs(store.view("A"))}
        assert devices.route_rules("7") == {"A": want.inputs}
        assert [e.body for e in entries["t7"]] == [want.body]
        assert devices.held("t7") == {"A": text_digest(want.body)}
        assert refresh(store, POLICY, at(4)) == {}  # nothing changed: nothing re-sent

        _put(store, 5, ("A", "dispatch", _eta(45)))  # a second source: a merged text again
        entries = refresh(store, POLICY, at(6))
        body, one_set = store.conn.execute("SELECT body, one_set FROM views").fetchone()
        assert one_set is None and body == store.view_bodies(["A"])["A"] == entries["t7"][0].body
        assert store.view("A").fields["eta"].state == "conflict"  # legacy's 30 vs dispatch's 45


def test_a_view_whose_claim_set_is_gone_is_a_store_error(tmp_path):
    import pytest

    from gateway.errors import StoreError

    with Store(tmp_path / "g.sqlite") as store:
        _put(store, 1, ("A", "legacy", ("driver", "7")))
        refresh(store, POLICY, at(2))
        store.conn.execute("DELETE FROM claim_sets")
        with pytest.raises(StoreError, match="order 'A' is claim set 'legacy:1:A'"):
            store.view_bodies(["A"])


def test_new_set_views_are_stored_as_put_views_stores_them(tmp_path):
    """A first export's orders take SQL's path (``gateway.store.setviews``); the same orders
    through ``put_views`` give the same rows, whatever their driver value."""
    from gateway.store.views import SetView
    from sync.merged import set_drivers

    drivers = ["7", "", 7, None, 'Ä"\\x', "12"]
    sets = [(f"O{n}", f"legacy:1:O{n}", {} if n == 6 else {"driver": d, "eta": _eta(n)[1]})
            for n, d in enumerate([*drivers, "absent"])]

    def stored(store: Store) -> tuple[list, list]:
        return (store.conn.execute("SELECT * FROM views ORDER BY order_id").fetchall(),
                store.conn.execute("SELECT * FROM route_members ORDER BY 1, 2").fetchall())

    def claim(store: Store) -> None:
        with store.transaction():
            for order_id, set_id, vals in sets:
                store.add_claim_set(set_id=set_id, source="legacy", order_id=order_id, vals=vals,
                                    as_of=at(1), received_at=at(1), hlc=store.next_hlc(at(1)))

    with Store(tmp_path / "sql.sqlite") as a, Store(tmp_path / "python.sqlite") as b:
        claim(a)
        refresh(a, POLICY, at(2))
        claim(b)
        views = [SetView(o, s, set_drivers(v)) for o, s, v in sets]
        with b.transaction():
            assert b.put_views([(v, None) for v in views]) == [True] * len(views)
            DeviceStore(b).set_routes_members([(v.order_id, [], v.drivers) for v in views])
        assert stored(a) == stored(b)
        assert [d for (d,) in a.conn.execute("SELECT drivers FROM views ORDER BY order_id")] \
            == ['["7"]', "[]", "[]", "[]", '["Ä\\"\\\\x"]', '["12"]', "[]"]
        assert refresh(a, POLICY, at(3)) == {}
