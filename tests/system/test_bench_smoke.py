"""The benchmarks' harnesses still measure what they say, at a tiny size: every change handed
in reaches its tablet's SQLite (the figures themselves are for the closing notes, not tests)."""

from __future__ import annotations

import json

import pytest

from bench import bench_agent, bench_catchup, bench_fanout, bench_refresh


@pytest.mark.broker
def test_fanout_harness_delivers_every_change(capsys: pytest.CaptureFixture[str]) -> None:
    # one change per stop (3 x 40), as the real run's 50,000 over 200 x 250
    assert bench_fanout.main(["--agents", "3", "--orders", "40", "--changes", "120",
                              "--batch", "20", "--dispatch", "5", "--dispatch-rate", "0",
                              "--timeout", "60"]) == 0
    out = capsys.readouterr()
    figures = json.loads(out.err.strip().splitlines()[-1])
    assert figures["crossdock"]["committed"] == figures["crossdock"]["expected"] == 120
    assert figures["crossdock"]["d_count"] == 5
    assert figures["raw"]["received"] == 120
    assert "ratio crossdock/raw" in out.out


@pytest.mark.broker
def test_catchup_harness_replays_one_entry_per_change(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_catchup.main(["--behind", "60", "--orders", "20", "--timeout", "60"]) == 0
    assert "for 60 entries" in capsys.readouterr().out


def test_agent_harness_applies_every_entry(capsys: pytest.CaptureFixture[str]) -> None:
    # the harness itself raises when the agent's applied seq is not the last entry's
    assert bench_agent.main(["--messages", "20", "--entries", "3", "--orders", "10",
                             "--repeat", "1"]) == 0
    assert "decode + session_message" in capsys.readouterr().out


def test_refresh_harness_times_every_part_of_the_refresh(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_refresh.main(["--drivers", "2", "--orders", "10", "--changes", "40",
                               "--batches", "20"]) == 0
    out = capsys.readouterr().out
    assert "40 entries" in out
    parts = out.split("of which", 1)[1].splitlines()[0]
    for part in ("claims", "merge", "put_view", "route sync", "COMMIT"):
        assert f"{part} 0.0," not in f"{parts},", parts  # each step was timed
