"""Loading the agent's TOML: exact keys, paths from the file's folder, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import load_config
from agent.errors import ConfigError

GOOD = """\
depot = "depot-1"
device = "tab-07"
driver = "7"
db = "data/tab-07.sqlite"
[broker]
host = "127.0.0.1"
port = 1883
username = "tab-07"
password = "secret"
tls = false
[sync]
session_expiry_s = 604800
resync_quiet_s = 30
backoff_min_s = 0.5
backoff_max_s = 30
"""


def test_loads_and_resolves_db_beside_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tab.toml"
    path.write_text(GOOD)
    config = load_config(path)
    assert config.db == tmp_path / "data" / "tab-07.sqlite"
    assert (config.broker.username, config.sync.session_expiry_s) == ("tab-07", 604800)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (("tls = false", "tls = false\ncolour = 1"), "broker.colour"),
        (('device = "tab-07"', 'device = "tab/07"'), "device"),
        (("port = 1883", 'port = "x"'), "broker.port"),
        (("backoff_min_s = 0.5", "backoff_min_s = 60"), "sync"),
    ],
)
def test_bad_key_names_file_and_key(tmp_path: Path, change: tuple[str, str], key: str) -> None:
    path = tmp_path / "tab.toml"
    path.write_text(GOOD.replace(*change))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "tab.toml" in message and f": {key}" in message
    assert "\n" not in message


def test_not_toml(tmp_path: Path) -> None:
    path = tmp_path / "tab.toml"
    path.write_text("depot = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
