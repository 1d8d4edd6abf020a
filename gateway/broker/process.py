"""Mosquitto as a managed child of the gateway (DESIGN.md §2, §4): ``ManagedBroker`` starts,
stops, kills, restarts and supervises one ``mosquitto`` process on the files
``gateway.broker.conf.write_config`` renders. Every failure is a ``GatewayError`` with a
one-line message.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from gateway.broker.binaries import find_mosquitto
from gateway.broker.child import die_with_parent
from gateway.broker.conf import (
    BrokerSettings,
    BrokerUser,
    depot_topics,
    write_config,
)
from gateway.errors import GatewayError

__all__ = ["ManagedBroker", "stop_stale_broker"]

log = logging.getLogger(__name__)

_RUNNING = re.compile(rb"mosquitto version \S+ running")
_LOG_STAMP = re.compile(r"^\d+: ")

def _pid_in(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def stop_stale_broker(pid_file: Path, conf: Path, timeout: float = 5.0) -> int | None:
    """Stop a Mosquitto a crashed gateway of this store left running; its pid, or None.

    Only a process whose command line names ``conf`` (this store's generated config) is
    stopped: a pid reused by another program, or another depot's broker, is left alone.
    SIGTERM (it saves its database), SIGKILL after ``timeout``.
    """
    pid = _pid_in(pid_file)
    if pid is None or pid == os.getpid():
        return None
    if str(conf) not in _cmdline(pid) and str(conf.resolve()) not in _cmdline(pid):
        pid_file.unlink(missing_ok=True)
        return None
    log.warning("stopping mosquitto pid %d, left running by an earlier gateway of this store "
                "(%s)", pid, conf)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and str(conf) in _cmdline(pid):
            time.sleep(0.02)
        if not _cmdline(pid):
            break
    pid_file.unlink(missing_ok=True)
    return pid


class ManagedBroker:
    """One ``mosquitto`` child process with a generated config.

    ``start`` returns once the broker accepts TCP connections; ``stop`` is a clean shutdown
    (SIGTERM: the broker saves its database), ``kill`` a crash (SIGKILL, for fault tests).
    ``supervise`` restarts a broker that died unless it was stopped on purpose; the gateway's
    scheduler calls it periodically. All methods are safe to call from several threads.
    """

    def __init__(self, settings: BrokerSettings, users: Sequence[BrokerUser], depot: str) -> None:
        depot_topics(depot)
        self.settings = settings
        self.users = tuple(users)
        self.depot = depot
        self.restarts = 0
        """How many times ``supervise`` has restarted a dead broker."""
        self._lock = threading.RLock()
        self._process: subprocess.Popen[bytes] | None = None
        self._wanted = False

    # -- where it is --

    @property
    def host(self) -> str:
        return self.settings.host

    @property
    def port(self) -> int:
        return self.settings.port

    @property
    def url(self) -> str:
        """``mqtt://HOST:PORT``: the plain listener."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def tls_url(self) -> str | None:
        """``mqtts://TLS_HOST:TLS_PORT``, or None without a TLS listener."""
        if self.settings.tls_port is None:
            return None
        return f"mqtts://{self.settings.tls_host}:{self.settings.tls_port}"

    @property
    def alive(self) -> bool:
        """True while the child process is running."""
        process = self._process
        return process is not None and process.poll() is None

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    # -- lifecycle --

    def start(self, timeout: float = 10.0) -> None:
        """Write the config, start ``mosquitto`` and wait until it listens.

        Does nothing if the broker is already running. Raises GatewayError (one line, with the
        end of Mosquitto's log) if the process exits or does not listen within ``timeout``.
        """
        with self._lock:
            self._wanted = True
            if self.alive:
                return
            binary = find_mosquitto()
            conf = write_config(self.settings, self.users, self.depot)
            log_file = self.settings.log_file
            offset = log_file.stat().st_size if log_file.exists() else 0
            stop_stale_broker(self.settings.pid_file, conf)
            with open(log_file, "ab") as log_handle:
                # Own session and process group: a Ctrl-C meant for the gateway does not reach
                # the broker; the gateway stops it cleanly instead. The kernel ends it when the
                # gateway ends, however it ends (die_with_parent: PR_SET_PDEATHSIG).
                self._process = subprocess.Popen(
                    [str(binary), "-c", str(conf)],
                    stdin=subprocess.DEVNULL,
                    stdout=log_handle,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=functools.partial(die_with_parent, os.getpid()),
                )
            self.settings.pid_file.write_text(f"{self._process.pid}\n", encoding="ascii")
            self._wait_until_listening(self._process, offset, timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker cleanly (SIGTERM, SIGKILL after ``timeout``); supervise leaves it."""
        with self._lock:
            self._wanted = False
            self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would: unsaved state is lost; supervise restarts it."""
        with self._lock:
            self._end(signal.SIGKILL, 5.0)

    def restart(self, timeout: float = 10.0) -> None:
        """A clean stop, then a start (the config is rewritten)."""
        with self._lock:
            self.stop()
            self.start(timeout)

    def supervise(self, timeout: float = 10.0) -> bool:
        """Restart the broker if it died while wanted; True if it was restarted.

        Raises GatewayError if the restart fails; the next call tries again.
        """
        with self._lock:
            if not self._wanted or self.alive:
                return False
            process = self._process
            code = process.returncode if process is not None else None
            log.warning(
                "mosquitto on %s exited (status %s); restarting: %s",
                self.url,
                code,
                self._log_tail(0),
            )
            self.restarts += 1
            self.start(timeout)
            return True

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "alive" if self.alive else "stopped"
        return f"<ManagedBroker {self.url} depot={self.depot} {state}>"

    # -- helpers --

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            self._signal(process, sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(process, signal.SIGKILL)
                process.wait()
        if _pid_in(self.settings.pid_file) == process.pid:
            self.settings.pid_file.unlink(missing_ok=True)

    @staticmethod
    def _signal(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)

    def _wait_until_listening(
        self, process: subprocess.Popen[bytes], offset: int, timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        where = f"{self.host}:{self.port}"
        if self.settings.tls_port is not None:
            where += f" and {self.settings.tls_host}:{self.settings.tls_port} (TLS)"
        while True:
            code = process.poll()
            if code is not None:
                raise GatewayError(
                    f"mosquitto exited with status {code} while starting on {where}: "
                    f"{self._log_tail(offset)}"
                )
            if self._log_says_running(offset) and self._accepts_connections():
                return
            if time.monotonic() >= deadline:
                self._end(signal.SIGKILL, 5.0)
                raise GatewayError(
                    f"mosquitto did not listen on {where} within {timeout:g} s: "
                    f"{self._log_tail(offset)}"
                )
            time.sleep(0.02)

    def _log_says_running(self, offset: int) -> bool:
        try:
            with open(self.settings.log_file, "rb") as handle:
                handle.seek(offset)
                return _RUNNING.search(handle.read()) is not None
        except OSError:
            return False

    def _accepts_connections(self) -> bool:
        # Only the plain listener: Mosquitto logs "running" once every listener is open (it
        # exits if one cannot bind), and a bare TCP probe of the TLS port is logged as a failed
        # TLS connection.
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        try:
            with socket.create_connection((host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _log_tail(self, offset: int, lines: int = 4) -> str:
        """The last ``lines`` lines of Mosquitto's log after ``offset``, joined on one line."""
        try:
            with open(self.settings.log_file, "rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(offset, size - 8192))
                text = handle.read().decode("utf-8", "replace")
        except OSError:
            return "(no log)"
        kept = [_LOG_STAMP.sub("", line).strip() for line in text.splitlines()]
        kept = [line for line in kept if line]
        return " | ".join(kept[-lines:]) if kept else "(log is empty)"
