"""bench_fanout's ``--boards``: at a tiny size, the run with boards open delivers every change
too, and the boards were really open and sent the changes (the figures are for the notes)."""

from __future__ import annotations

import json

import pytest

from bench import bench_fanout

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_fanout_with_boards_delivers_every_change_and_the_boards_follow(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_fanout.main(["--agents", "3", "--orders", "40", "--changes", "120",
                              "--batch", "20", "--dispatch", "0", "--timeout", "60",
                              "--boards", "2", "--skip-raw"]) == 0
    out = capsys.readouterr()
    figures = json.loads(out.err.strip().splitlines()[-1])
    assert figures["crossdock"]["committed"] == figures["crossdock"]["expected"] == 120
    with_boards = figures["with_boards"]
    assert with_boards["committed"] == with_boards["expected"] == 120
    board = with_boards["board"]
    assert board["boards"] == 2 and board["errors"] == 0
    assert board["renders"] >= 1 and board["events"] >= 2  # each board got the first state
    assert "with 2 boards open" in out.out
