"""A wheel that runs: built from the checkout, installed in a fresh virtual environment outside
it, where ``crossdock gateway sample`` and ``crossdock gateway run`` start the managed Mosquitto
from the templates the package carries (not from the checkout's files)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import venv
import zipfile
from pathlib import Path

import pytest

from tests.broker import free_port

pytestmark = [pytest.mark.slow, pytest.mark.broker]

ROOT = Path(__file__).resolve().parents[2]
CONNECT = bytes([0x10, 0x10, 0x00, 0x04]) + b"MQTT" + bytes([0x04, 0x02, 0x00, 0x1E, 0x00, 0x04]) \
    + b"whl1"
"""An MQTT 3.1.1 CONNECT (clean session, keepalive 30 s, client id "whl1", no credentials)."""


def _connack(port: int) -> bytes | None:
    """Mosquitto's answer to a CONNECT on ``port`` (a refusal is an answer too), or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(CONNECT)
            return sock.recv(4)
    except OSError:
        return None


def _run(*args: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done


def test_an_installed_wheel_samples_a_depot_and_runs_its_managed_mosquitto(
        tmp_path: Path) -> None:
    src = tmp_path / "src"  # a copy: building leaves build/ and egg-info beside the sources
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "crossdock_cli.py"):
        shutil.copy2(ROOT / name, src / name)
    for package in ("agent", "gateway", "sync", "ui"):
        shutil.copytree(ROOT / package, src / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", wheels, src,
         cwd=tmp_path)
    (wheel,) = wheels.glob("crossdock-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "sync/host/lock.py" in names and "agent/store/outbox.py" in names  # subpackages
    for template in ("acl.tmpl", "mosquitto.conf.tmpl", "tls-listener.tmpl"):
        assert f"gateway/broker/templates/{template}" in names

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    _run(python, "-m", "pip", "install", "--quiet", f"{wheel}[gateway]", cwd=tmp_path)
    crossdock = env_dir / "bin" / "crossdock"
    where = _run(python, "-c", "import gateway.broker.conf as c; print(c.TEMPLATE_DIR)",
                 cwd=tmp_path).stdout.strip()
    assert where.startswith(str(env_dir)), where  # the installed package's, not the checkout's

    depot = tmp_path / "depot"
    port = free_port()
    _run(crossdock, "gateway", "sample", "--out", depot, "--port", str(port), cwd=tmp_path)
    log = (tmp_path / "run.log").open("w")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.Popen([str(crossdock), "gateway", "run", "--config",
                             str(depot / "gateway.toml")], cwd=tmp_path, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        answer = None
        deadline = time.monotonic() + 60
        while answer is None and proc.poll() is None and time.monotonic() < deadline:
            answer = _connack(port)
            if answer is None:
                time.sleep(0.2)
        assert answer is not None and answer[:1] == b"\x20", (
            f"no CONNACK on port {port}: {(tmp_path / 'run.log').read_text()}")
        assert (depot / "broker" / "mosquitto.conf").is_file()  # rendered from the package
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log.close()
