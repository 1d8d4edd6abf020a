"""Nothing a driver did vanishes at the gateway, even when refused (issue 10): a tablet records
a delivery and an arrival offline while dispatch moves both orders to another driver; on
reconnect both are refused, and `crossdock gateway refused` lists them for dispatch (the
delivery as a result for a moved order), `gateway/status` counts them, the audit names them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.system.depot import Depot, reopen, wait_for
from tests.system.test_bad_input import _counters

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def _crossdock(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crossdock_cli", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_actions_on_orders_moved_away_while_offline_are_listed_for_dispatch(
        depot: Depot, network) -> None:
    depot.export([("A", "7", 1, "PLANNED"), ("B", "7", 2, "PLANNED"), ("C", "12", 1, "PLANNED")])
    tab = depot.add_device("tab-7", "7")
    assert wait_for(lambda: {s.order_id for s in tab.route()} == {"A", "B"}, 30)
    tab.stop()  # the tablet drops off the network
    offline = reopen(depot, "tab-7", "7", start=False)
    delivered = offline.act("deliver", "A")
    arrived = offline.act("arrive", "B")
    for order_id in ("A", "B"):  # meanwhile dispatch gives both stops to driver 12
        reply = depot.dispatch(action="assign", order_id=order_id, driver="12", override=True)
        assert reply.body.ok, reply.body.reason
    offline.start()
    assert offline.wait_acked(delivered, 20) and offline.wait_acked(arrived, 20)

    config = str(depot.root / "gateway.toml")
    listed = _crossdock("gateway", "refused", "--config", config, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["event_id"]: r for r in json.loads(listed.stdout)}
    assert set(rows) == {delivered, arrived}
    moved, other = rows[delivered], rows[arrived]
    assert (moved["device"], moved["driver"], moved["order_id"], moved["action"],
            moved["kind"]) == ("tab-7", "7", "A", "deliver", "moved_result")
    assert "now on driver 12's route" in moved["reason"]
    assert (other["kind"], other["action"], other["order_id"]) == ("refused", "arrive", "B")
    assert "not on driver 7's route" in other["reason"]
    for row in rows.values():
        assert row["at"][-6] in "+-" and row["received_at"][-6] in "+-"  # ISO 8601 with offset
        assert row["dismissed_at"] is None

    text = _crossdock("gateway", "refused", "--config", config)
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0].startswith("times in ")
    line = next(ln for ln in text.stdout.splitlines() if " deliver A" in ln)
    assert "RESULT FOR A MOVED ORDER" in line and "tab-7 (driver 7)" in line
    assert "2 refused event(s), 1 result(s) for moved orders" in text.stdout

    with depot.store() as store:
        audit = [a for a in store.audit_log() if a["action"] == "refused-event"]
    assert {a["detail"]["kind"] for a in audit} == {"moved_result", "refused"}

    with network.probe("status-reader") as probe:
        counters = _counters(probe, {"refused_events": 2, "moved_results": 1})
    assert counters["refused_open"] == 2
