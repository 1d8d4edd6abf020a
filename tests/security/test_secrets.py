"""Secrets at rest: the store keeps only salted hashes of tablet passwords (an older store's
plain ones are hashed on open, and still log in), and every file holding a secret or the store
is 0600 in a 0700 folder under umask 022; ``gateway run`` says in one line when one is not."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.store.core import Store
from gateway.store.devices import DeviceStore
from tests.broker import connect_reason
from tests.security.depot import SecureDepot

pytestmark = pytest.mark.broker


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _store_bytes(depot: SecureDepot) -> bytes:
    db = depot.cfg.db_path
    return b"".join(p.read_bytes() for p in (db, db.with_name(db.name + "-wal"),
                                             db.with_name(db.name + "-shm")) if p.exists())


def test_the_store_holds_no_plain_tablet_password_and_the_tablet_logs_in(
        secure_depot: SecureDepot) -> None:
    tablet = secure_depot.add("tab-a", "DRV-001")
    with Store(secure_depot.cfg.db_path) as store:
        hashed = DeviceStore(store).get("tab-a")
    assert hashed is not None and hashed.password_hash.startswith("$7$")
    assert tablet.password.encode() not in _store_bytes(secure_depot)
    secure_depot.start()
    assert tablet.password.encode() not in (secure_depot.broker.settings.password_file
                                            ).read_bytes()
    with secure_depot.login(tablet) as probe:  # control: the password in its file works
        assert probe.connected.is_set()
    wrong = connect_reason(secure_depot.broker, "x", username=tablet.username,
                           password=tablet.password + "x")
    assert wrong.is_failure


def test_an_older_stores_plain_passwords_are_hashed_and_still_log_in(
        secure_depot: SecureDepot) -> None:
    tablet = secure_depot.add("tab-a", "DRV-001")
    with Store(secure_depot.cfg.db_path) as store:  # as an older gateway kept it: plain
        store.conn.execute("ALTER TABLE devices RENAME COLUMN password_hash TO password")
        store.conn.execute("UPDATE devices SET password=? WHERE device='tab-a'",
                           (tablet.password,))
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert tablet.password.encode() in _store_bytes(secure_depot)  # the premise
    with Store(secure_depot.cfg.db_path) as store:
        found = DeviceStore(store).get("tab-a")
    assert found is not None and found.password_hash.startswith("$7$")
    assert tablet.password.encode() not in _store_bytes(secure_depot)
    secure_depot.start()
    with secure_depot.login(tablet) as probe:
        assert probe.connected.is_set()


def test_files_with_secrets_or_the_store_are_0600_in_0700_folders_under_umask_022(
        tmp_path: Path, umask_022: None) -> None:
    depot = SecureDepot(tmp_path / "depot")
    try:
        depot.cli("gateway", "tls-cert", "--config", str(depot.config), "--host", "127.0.0.1")
        # devices add refuses a folder that does not exist (issue 10): the operator makes it
        (tmp_path / "tablets").mkdir(mode=0o700)
        out = tmp_path / "tablets" / "tab-a.toml"
        depot.cli("gateway", "devices", "add", "tab-a", "--driver", "DRV-001",
                  "--agent-config", str(out), "--config", str(depot.config))
        depot.start()
        db = depot.cfg.db_path
        broker = depot.broker.settings
        files = [depot.config, depot.root / "dispatch.toml", db, db.with_name(db.name + "-wal"),
                 db.with_name(db.name + "-shm"), out, depot.root / "broker-key.pem",
                 broker.password_file, broker.acl_file, broker.conf_file]
        folders = [depot.root, broker.data_dir]
        assert {str(p): oct(_mode(p)) for p in files} == {str(p): "0o600" for p in files}
        assert {str(p): oct(_mode(p)) for p in folders} == {str(p): "0o700" for p in folders}
    finally:
        depot.stop()


def _run_until_running(config: Path) -> list[str]:
    """``gateway run``'s stderr lines up to its "running" line; then it is stopped."""
    proc = subprocess.Popen([sys.executable, "-m", "crossdock_cli", "gateway", "run",
                             "--no-scheduler", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))
            if " running (" in line:
                break
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=20)  # reads the rest and closes the pipe
    assert any(" running (" in line for line in lines), lines
    return lines


@pytest.mark.slow
def test_gateway_run_warns_in_one_line_about_a_secret_file_readable_by_others(
        secure_depot: SecureDepot) -> None:
    quiet = _run_until_running(secure_depot.config)
    assert not [line for line in quiet if "warning" in line]  # control: all private
    os.chmod(secure_depot.config, 0o644)
    said = [line for line in _run_until_running(secure_depot.config) if "warning" in line]
    assert len(said) == 1
    assert str(secure_depot.config) in said[0] and "0644" in said[0]
    assert "dispatch.toml" not in said[0]


def test_a_tablets_file_with_tls_is_0600_beside_its_ca_copy_under_umask_022(
        tmp_path: Path, umask_022: None) -> None:
    depot = SecureDepot(tmp_path / "depot")
    depot.cli("gateway", "tls-cert", "--config", str(depot.config), "--host", "127.0.0.1")
    text = depot.config.read_text(encoding="utf-8").replace(
        "[broker]\n", '[broker]\ntls_port = 8883\ncertfile = "broker-cert.pem"\n'
        'keyfile = "broker-key.pem"\npublic_host = "127.0.0.1"\n', 1)
    depot.config.write_text(text, encoding="utf-8")
    (tmp_path / "new").mkdir()  # 0755 under the umask; devices add refuses a missing folder
    out = tmp_path / "new" / "tab-a.toml"
    depot.cli("gateway", "devices", "add", "tab-a", "--driver", "DRV-001",
              "--agent-config", str(out), "--config", str(depot.config))
    assert (out.parent / "tab-a-ca.pem").exists()  # the premise: TLS, a CA copy beside it
    assert oct(_mode(out)) == "0o600"
