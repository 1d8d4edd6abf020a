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
    logs = tmp_path / "demo" / "logs"  # the processes' output, kept (issue 10)
    assert (logs / "gateway.log").exists() and len(list(logs.glob("tab-*.log"))) == 2


def test_the_demos_processes_write_logs_that_a_failure_names(tmp_path: Path):
    import logging

    from gateway.demo import _Logs, _wait
    from gateway.errors import GatewayError

    logs = _Logs(tmp_path, tmp_path / "broker" / "mosquitto.log")
    try:
        config = tmp_path / "tab-x.toml"
        config.write_text('depot = "d"\ndevice = "tab-x"\ndriver = "D"\ndb = "tab-x.sqlite"\n'
                          '[broker]\nhost = "127.0.0.1"\nport = 1\nusername = "tab-x"\n'
                          'password = "p"\ntls = false\n')
        logs.spawn_tablet("tab-x", config)
        logging.getLogger("gateway.demo.test").info("the gateway's own lines go here")
        with pytest.raises(GatewayError) as failed:
            _wait("something that never happens", lambda: False, logs, timeout=1.0)
    finally:
        for _log, proc in logs.tablets.values():
            proc.terminate()
            proc.wait(timeout=20)
        logs.close()
    message = str(failed.value)
    assert "\n" not in message and "something that never happens" in message
    assert str(tmp_path / "logs") in message and "tab-x.log" in message
    assert "gateway.log" in message and "mosquitto.log" in message
    assert "the gateway's own lines go here" in (tmp_path / "logs" / "gateway.log").read_text()
