"""sync.zones.check_zone: the one time-zone check of the agent's config and the mappings."""

from __future__ import annotations

import pytest

from sync.errors import SyncError
from sync.zones import check_zone


def test_check_zone_passes_a_known_zone_and_names_an_unknown_one():
    assert check_zone("Europe/Berlin") == "Europe/Berlin"
    with pytest.raises(SyncError, match="unknown time zone 'Mars/Olympus'"):
        check_zone("Mars/Olympus")
