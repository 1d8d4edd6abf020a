"""`crossdock demo` runs the whole story as a user would: one command, exit 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_demo_tells_the_conflict_story_and_ends_with_no_conflict(tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, "-m", "crossdock_cli", "demo", "--dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=240, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "6 quarantined" in out
    assert "Both tablets show the conflict" in out
    assert out.count("legacy says") == 2 and out.count("dispatch says") == 2
    assert "open conflicts: 0" in out
    assert "Traceback" not in proc.stderr
    assert any((tmp_path / "demo" / "import").iterdir())  # the write-back drop
