"""gateway.toml: supersession rules are named in the config, and can be turned off there;
a config file that cannot be read is a one-line ConfigError naming it."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.dispatch import load_dispatch_config
from gateway.errors import ConfigError
from gateway.setup import dispatch_password, init_dir
from sync.merge import merge_order
from tests.sync.factories import at, claim


def _status_view(policy):
    legacy = claim("L1", "legacy", "planned", field="status")
    driver = claim("V1", "driver", "delivered", field="status", minute=600)
    return merge_order("X", [legacy, driver], [], policy, at(601)).fields["status"]


def test_init_names_the_default_rule_in_the_config(tmp_path: Path):
    init_dir(tmp_path, depot="d", port=1883, now=dt.datetime(2026, 11, 27, tzinfo=dt.UTC))
    text = (tmp_path / "gateway.toml").read_text()
    assert 'name = "driver-outcome-over-older-export"' in text
    policy = load_config(tmp_path / "gateway.toml").merge_policy()
    assert [r.name for r in policy.rules] == ["driver-outcome-over-older-export"]
    fv = _status_view(policy)
    assert (fv.state, fv.stale[0].rule) == ("agreed", "driver-outcome-over-older-export")


def test_rules_turned_off_in_the_config_leave_the_case_to_a_person(tmp_path: Path):
    (tmp_path / "gateway.toml").write_text('depot = "d"\n[policy]\nrules = []\n')
    policy = load_config(tmp_path / "gateway.toml").merge_policy()
    assert policy.rules == ()
    assert _status_view(policy).state == "conflict"


def test_a_malformed_rule_is_a_one_line_config_error(tmp_path: Path):
    (tmp_path / "gateway.toml").write_text(
        'depot = "d"\n[[policy.rules]]\nname = "x"\nnewer = "driver"\n')
    with pytest.raises(ConfigError, match=r"policy\.rules\.0\.older: Field required"):
        load_config(tmp_path / "gateway.toml")


def test_a_dispatch_toml_that_is_not_utf8_or_not_toml_is_a_config_error_naming_it(
    tmp_path: Path
):
    init_dir(tmp_path, depot="d", port=1883, now=dt.datetime(2026, 11, 27, tzinfo=dt.UTC))
    cfg = load_config(tmp_path / "gateway.toml")
    dispatch = tmp_path / "dispatch.toml"
    named = re.escape(f"config {dispatch}: not valid TOML")
    for broken in (b'depot = "d"\n[broker]\npassword = "\xff"\n', b'depot = "d"\n[broker\n'):
        dispatch.write_bytes(broken)
        with pytest.raises(ConfigError, match=named):
            load_dispatch_config(dispatch)
        with pytest.raises(ConfigError, match=named):
            load_dispatch_config(tmp_path / "gateway.toml")  # reads dispatch.toml beside it
        with pytest.raises(ConfigError, match=named):
            dispatch_password(cfg)


def test_a_dispatch_port_that_is_not_a_number_is_a_config_error(tmp_path: Path):
    dispatch = tmp_path / "dispatch.toml"
    dispatch.write_text('depot = "d"\n[broker]\nport = "abc"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broker\.port: 'abc' is not a port number"):
        load_dispatch_config(dispatch)


@pytest.mark.parametrize("url", ["http://box:1883", "mqtt://:1883", "mqtt://box:port"])
def test_a_broker_url_that_is_not_mqtt_host_port_is_a_config_error(tmp_path: Path, url: str):
    (tmp_path / "gateway.toml").write_text(f'depot = "d"\n[broker]\nurl = "{url}"\n')
    with pytest.raises(ConfigError, match=r"broker\.url: .*want mqtt://host:port"):
        load_config(tmp_path / "gateway.toml")


def test_the_gateway_and_dispatch_reach_the_broker_at_one_address(tmp_path: Path):
    (tmp_path / "gateway.toml").write_text(
        'depot = "d"\ndb = "g.sqlite"\n'
        '[broker]\nurl = "mqtt://depot-gw:1884"\npassword = "s3cret"\n')
    cfg = load_config(tmp_path / "gateway.toml")
    assert cfg.broker.address == ("depot-gw", 1884)
    dispatch = load_dispatch_config(tmp_path / "gateway.toml")  # no dispatch.toml beside it
    assert (dispatch.host, dispatch.port, dispatch.username, dispatch.password) == (
        "depot-gw", 1884, "gateway", "s3cret")
