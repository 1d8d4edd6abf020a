"""An action the gateway refuses (the order left the driver's route while the tablet was
offline) is answered with the reason to a 0.3 tablet, which keeps it until the driver dismisses
it; a 0.2 tablet is acked plainly, as before."""

from __future__ import annotations

import json

from click.testing import CliRunner

from agent.cli import agent as agent_cli
from agent.service import Agent
from gateway.store.devices import DeviceStore
from tests.system.depot import Depot, agent_config, wait_for, write_agent_config


def _refused_offline(depot: Depot, *, app_version: str | None) -> tuple[Agent, str]:
    """Driver 7 delivers X while offline; meanwhile legacy moves X to driver 8."""
    depot.export([("X", "7", 1, "PLANNED"), ("Y", "7", 2, "PLANNED")])
    tab = depot.add_device("tab-7", "7")
    assert wait_for(lambda: len(tab.route()) == 2, 20)
    tab.stop()
    depot.agents.remove(tab)
    offline = Agent(agent_config(depot, "tab-7", "7"), app_version=app_version,
                    transport=depot.transport)
    event_id = offline.act("deliver", "X")
    depot.export([("X", "8", 1, "PLANNED"), ("Y", "7", 2, "PLANNED")])
    assert wait_for(lambda: "X" not in depot.service.call(
        lambda store: DeviceStore(store).route("7")), 20)  # merged (ingests settle 0.5 s)
    depot.agents.append(offline)
    offline.start()  # reconnects: resends the outbox
    assert offline.wait_online(10)
    assert offline.wait_acked(event_id, 20)
    return offline, event_id


def test_refused_action_is_kept_with_its_reason_until_dismissed(depot: Depot) -> None:
    tab, event_id = _refused_offline(depot, app_version=None)  # this package: 0.3.0
    assert tab.pending() == []
    [refused] = tab.refused()
    assert (refused.event_id, refused.order_id, refused.action) == (event_id, "X", "deliver")
    assert refused.reason == ("result for an order that moved to another driver: delivered X "
                              "by driver 7, now on driver 8's route")
    assert refused.dismissed_at is None

    config = write_agent_config(depot, "tab-7-copy", "7")  # state reads the same SQLite file
    text = config.read_text(encoding="utf-8").replace("tab-7-copy.sqlite", "tab-7.sqlite")
    config.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(agent_cli, ["state", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    [shown] = json.loads(result.output)["refused"]
    assert (shown["event_id"], shown["reason"]) == (event_id, refused.reason)

    dismissal = tab.dismiss(event_id)
    assert tab.refused() == []
    [kept] = tab.refused(dismissed=True)
    assert kept.dismissed_at is not None and kept.dismissal_id == dismissal
    assert tab.wait_acked(dismissal, 20)
    assert tab.refused() == []  # the dismissal was applied, not refused in turn
    with depot.store() as store:
        row = store.conn.execute(
            "SELECT device, dismissal_id FROM dismissals WHERE event_id=?", (event_id,)
        ).fetchone()
        assert tuple(row) == ("tab-7", dismissal)
        assert DeviceStore(store).event_outcome("tab-7", dismissal) == "applied"


def test_an_older_tablet_gets_a_plain_ack_for_a_refused_action(depot: Depot) -> None:
    tab, event_id = _refused_offline(depot, app_version="0.2.0")
    assert tab.pending() == []
    assert tab.refused() == []  # it heard "stored", as 0.2 gateways told it
    with depot.store() as store:
        outcome = DeviceStore(store).event_outcome("tab-7", event_id)
        assert outcome is not None and outcome.startswith("refused: ")
        assert DeviceStore(store).counters()["refused_events"] == 1
