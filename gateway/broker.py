"""Mosquitto as a managed child of the gateway (DESIGN.md §2, §4, §6).

The gateway either connects to a broker that is already running or runs its own: this module
renders the broker's config from the templates in ``packaging/mosquitto/`` and supervises the
``mosquitto`` process.

* ``BrokerSettings`` -- one frozen, validated settings object (the ``[broker]`` table): a
  plain listener on ``host`` (loopback: the gateway and dispatch on this box) and, with
  ``tls_port``/``certfile``/``keyfile``, a TLS listener on ``tls_host`` for the tablets
  (DESIGN.md §6: TLS on every listener that leaves the box).
* ``BrokerUser`` -- one MQTT identity: the gateway, a dispatch console or one tablet.
* ``write_config(settings, users, depot)`` -- ``mosquitto.conf``, a hashed password file
  (made by ``mosquitto_passwd``; plain passwords never reach the disk for longer than the
  hashing takes, and never the config) and the ACL, all in ``settings.data_dir``.
* ``ManagedBroker`` -- start / stop / kill / restart / supervise one ``mosquitto`` child.

The templates are read from the source tree (``<repo>/packaging/mosquitto``): the gateway runs
from a checkout or an editable install. A wheel would have to ship that directory beside the
packages for ``TEMPLATE_DIR`` to find it.

Every failure is a ``GatewayError`` with a one-line message (``ConfigError`` for settings or
identities that cannot work).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from string import Template
from types import TracebackType
from typing import Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gateway.errors import ConfigError, GatewayError
from host.child import die_with_parent
from sync.codec import DEFAULT_MAX_BYTES
from sync.errors import SyncError
from sync.topics import Topics, check_segment

__all__ = [
    "TEMPLATE_DIR",
    "BrokerSettings",
    "BrokerUser",
    "ManagedBroker",
    "check_tls_listener",
    "find_binary",
    "find_mosquitto",
    "free_port",
    "render_acl",
    "render_tls_listener",
    "write_config",
]

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "packaging" / "mosquitto"
"""Where ``mosquitto.conf.tmpl`` and ``acl.tmpl`` live (a checkout or an editable install)."""

Role = Literal["gateway", "dispatch", "device"]
_ROLE_ORDER: dict[str, int] = {"gateway": 0, "dispatch": 1, "device": 2}

# A PUBLISH packet is its payload plus the topic (at most 65535 bytes), a fixed header and
# properties; the payload limit itself is enforced by sync.codec on decode.
_PACKET_HEADROOM = 64 * 1024 + 1024
_EXPIRATION = re.compile(r"^[1-9][0-9]*[hdwmy]$")
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_HOST = re.compile(r"^[A-Za-z0-9_.:-]{1,253}$")
_RUNNING = re.compile(rb"mosquitto version \S+ running")
_LOG_STAMP = re.compile(r"^\d+: ")
_SECTION = re.compile(r"^## role: (\w+)\s*$")


def check_tls_listener(port: int, tls_port: int | None, certfile: object, keyfile: object
                       ) -> None:
    """ValueError unless the TLS listener is all of ``tls_port``, ``certfile`` and ``keyfile``
    or none, on a port of its own (``BrokerSettings`` and gateway.toml's ``[broker]``)."""
    given = {"tls_port": tls_port, "certfile": certfile, "keyfile": keyfile}
    missing = [name for name, value in given.items() if value is None]
    if missing and len(missing) < len(given):
        raise ValueError(
            f"a TLS listener needs tls_port, certfile and keyfile; missing: {', '.join(missing)}"
        )
    if tls_port is not None and tls_port == port:
        raise ValueError(f"tls_port and port are both {port}; give TLS its own port")


class BrokerSettings(BaseModel):
    """How the managed Mosquitto runs. Everything it writes lives in ``data_dir``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    # Off only for tests and a developer's laptop: every real client has its own identity.
    allow_anonymous: bool = False
    # The generated ACL (DESIGN §6). Off only for tests: then every client may use every topic.
    acl: bool = True
    persistence: bool = True
    # Seconds between saves of the in-memory database (0: only on shutdown). A SIGKILL loses
    # at most this much broker state; the device streams repair what is lost.
    autosave_interval: int = Field(default=60, ge=0)
    # How long the broker keeps the session of a client that stays away (``14d``, ``6w``...).
    persistent_client_expiration: str = "14d"
    # Mosquitto's default (1000) silently drops QoS 1 messages for an offline client past the
    # limit. crossdock never depends on the queue for correctness (streams have a gapless seq
    # and the gateway replays gaps), but a generous queue avoids needless replays.
    max_queued_messages: int = Field(default=100_000, ge=0)
    max_inflight_messages: int = Field(default=20, ge=0)
    # The largest envelope payload, as sync.codec.DEFAULT_MAX_BYTES; see ``max_packet_size``.
    max_payload_bytes: int = Field(default=DEFAULT_MAX_BYTES, ge=1024)
    # The TLS listener for clients off the box (tablets on the depot Wi-Fi): all three of
    # tls_port, certfile and keyfile, or none. Same identities and ACL as the plain listener.
    tls_port: int | None = Field(default=None, ge=1, le=65535)
    tls_host: str = "0.0.0.0"
    certfile: Path | None = None
    keyfile: Path | None = None

    @field_validator("host", "tls_host")
    @classmethod
    def _host_is_one_token(cls, value: str) -> str:
        if not _HOST.match(value):
            raise ValueError(f"{value!r} is not a host name or address")
        return value

    @field_validator("persistent_client_expiration")
    @classmethod
    def _expiration_is_a_duration(cls, value: str) -> str:
        if not _EXPIRATION.match(value):
            raise ValueError(f"{value!r} is not a duration like 14d (units: h d w m y)")
        return value

    @field_validator("data_dir", "certfile", "keyfile")
    @classmethod
    def _path_is_one_line(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and ("\n" in str(value) or "\r" in str(value)):
            raise ValueError(f"{info.field_name} must not contain a line break")
        return value

    @model_validator(mode="after")
    def _tls_is_all_or_nothing(self) -> Self:
        check_tls_listener(self.port, self.tls_port, self.certfile, self.keyfile)
        return self

    @property
    def max_packet_size(self) -> int:
        """The whole MQTT packet limit given to Mosquitto: payload limit plus headroom."""
        return self.max_payload_bytes + _PACKET_HEADROOM

    @property
    def conf_file(self) -> Path:
        return self.data_dir / "mosquitto.conf"

    @property
    def password_file(self) -> Path:
        return self.data_dir / "passwd"

    @property
    def acl_file(self) -> Path:
        return self.data_dir / "acl"

    @property
    def pid_file(self) -> Path:
        """The managed broker's pid, so a gateway of this store finds one a crash left."""
        return self.data_dir / "mosquitto.pid"

    @property
    def log_file(self) -> Path:
        """Mosquitto's log; its stdout and stderr go there too."""
        return self.data_dir / "mosquitto.log"


class BrokerUser(BaseModel):
    """One MQTT identity. A ``device`` user names its device; the others must not."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    username: str
    password: SecretStr
    role: Role
    device: str | None = None

    @field_validator("username")
    @classmethod
    def _username_is_safe(cls, value: str) -> str:
        if not _USERNAME.match(value):
            raise ValueError(f"username {value!r} may hold only letters, digits and _ . @ -")
        return value

    @field_validator("password")
    @classmethod
    def _password_fits_the_file(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if not secret:
            raise ValueError("password must not be empty")
        if any(ch in secret for ch in ":\n\r\0"):
            raise ValueError("password must not contain ':', a line break or NUL")
        return value

    @model_validator(mode="after")
    def _device_matches_role(self) -> Self:
        if self.role == "device":
            if self.device is None:
                raise ValueError(f"device user {self.username!r} needs a device id")
            try:
                check_segment(self.device, "device")
            except SyncError as exc:
                raise ValueError(str(exc)) from exc
        elif self.device is not None:
            raise ValueError(f"{self.role} user {self.username!r} must not name a device")
        return self


# --- binaries and ports --------------------------------------------------------------------


_BINARY_FOLDERS: tuple[str, ...] = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")
"""Where a binary is looked for when it is not on PATH (a gateway started by systemd or cron)."""


def find_binary(name: str, package: str = "mosquitto") -> Path:
    """``name`` on PATH, then in the sbin/bin folders; GatewayError naming the Debian package."""
    found = shutil.which(name)
    if found:
        return Path(found)
    for folder in _BINARY_FOLDERS:
        candidate = Path(folder) / name
        if os.access(candidate, os.X_OK):
            return candidate
    raise GatewayError(f"{name} is not installed: apt-get install {package}")


def find_mosquitto() -> Path:
    """The ``mosquitto`` binary (PATH, then /usr/sbin); GatewayError if it is not installed."""
    return find_binary("mosquitto")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host`` (for tests and ``gateway init``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# --- config files --------------------------------------------------------------------------


def _template(name: str) -> str:
    path = TEMPLATE_DIR / name
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GatewayError(
            f"cannot read broker template {path}: {exc.strerror}; "
            "run the gateway from a checkout or an editable install"
        ) from exc


def _substitute(template: str, values: Mapping[str, object], name: str) -> str:
    try:
        return Template(template).substitute(values)
    except (KeyError, ValueError) as exc:
        raise GatewayError(f"broker template {name} has an unknown placeholder: {exc}") from exc


def _topics(depot: str) -> Topics:
    try:
        return Topics(depot)
    except SyncError as exc:
        raise ConfigError(str(exc)) from exc


def render_acl(users: Sequence[BrokerUser], depot: str) -> str:
    """The ACL text for ``users`` from ``acl.tmpl``: one block per identity, gateway first."""
    topics = _topics(depot)
    header: list[str] = []
    sections: dict[str, list[str]] = {}
    current = header
    for line in _template("acl.tmpl").splitlines():
        if line.startswith("#:"):
            continue
        section = _SECTION.match(line)
        if section:
            current = sections.setdefault(section.group(1), [])
            continue
        current.append(line)
    common = {
        "depot": depot,
        "root": topics.root,
        "commands": topics.commands,
        "gateway_status": topics.gateway_status,
    }
    parts = [_substitute("\n".join(header).strip("\n"), common, "acl.tmpl")]
    ordered = sorted(users, key=lambda user: (_ROLE_ORDER[user.role], user.username))
    for user in ordered:
        if user.role not in sections:
            raise GatewayError(f"broker template acl.tmpl has no '## role: {user.role}' section")
        values: dict[str, object] = {**common, "username": user.username, "device": ""}
        if user.device is not None:
            values |= {
                "device": user.device,
                "inbox": topics.inbox(user.device),
                "acks": topics.acks(user.device),
                "outbox": topics.outbox(user.device),
                "device_status": topics.device_status(user.device),
            }
        text = "\n".join(sections[user.role]).strip("\n")
        parts.append(_substitute(text, values, "acl.tmpl"))
    return "\n\n".join(parts) + "\n"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by the owner only."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _write_password_file(path: Path, users: Sequence[BrokerUser]) -> None:
    """Hash the passwords with ``mosquitto_passwd -U`` on a private scratch file."""
    tool = find_binary("mosquitto_passwd")
    tmp = path.with_name(path.name + ".plain")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for user in users:
                handle.write(f"{user.username}:{user.password.get_secret_value()}\n")
        result = subprocess.run(
            [str(tool), "-U", str(tmp)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            reason = (result.stderr or result.stdout).strip().replace("\n", " | ")
            raise GatewayError(f"mosquitto_passwd could not hash the broker passwords: {reason}")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _check_readable(path: Path, what: str) -> None:
    """ConfigError (one line, naming the file) unless ``path`` is a file this user can read."""
    if not path.is_file():
        raise ConfigError(f"broker {what} {path}: no such file")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"broker {what} {path}: cannot read: {exc.strerror}") from None


def render_tls_listener(settings: BrokerSettings) -> str:
    """The TLS listener block from ``tls-listener.tmpl``, or a comment when TLS is off."""
    if settings.tls_port is None or settings.certfile is None or settings.keyfile is None:
        return "# no TLS listener: tls_port, certfile and keyfile are not set"
    values = {
        "tls_port": settings.tls_port,
        "tls_host": settings.tls_host,
        "certfile": settings.certfile.resolve(),
        "keyfile": settings.keyfile.resolve(),
    }
    text = "\n".join(
        line for line in _template("tls-listener.tmpl").splitlines() if not line.startswith("#:")
    )
    return _substitute(text.strip("\n"), values, "tls-listener.tmpl")


def write_config(settings: BrokerSettings, users: Sequence[BrokerUser], depot: str) -> Path:
    """Write ``mosquitto.conf``, the password file and the ACL into ``settings.data_dir``.

    Returns the path of ``mosquitto.conf``. Files are rewritten on every call. With TLS, the
    certificate and key must be readable files (ConfigError naming the file otherwise).
    """
    topics = _topics(depot)
    if settings.certfile is not None:
        _check_readable(settings.certfile, "certfile")
    if settings.keyfile is not None:
        _check_readable(settings.keyfile, "keyfile")
    names = [user.username for user in users]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"broker usernames must be unique; repeated: {', '.join(duplicates)}")
    if not users and not settings.allow_anonymous:
        raise ConfigError(
            "the broker has no users and refuses anonymous clients, so nobody could connect; "
            "add identities or set allow_anonymous"
        )
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    if users:
        _write_password_file(settings.password_file, users)
        password_line = f"password_file {settings.password_file}"
    else:
        settings.password_file.unlink(missing_ok=True)
        password_line = "# no password file: no identities configured"
    if settings.acl:
        _write_private(settings.acl_file, render_acl(users, depot))
        acl_line = f"acl_file {settings.acl_file}"
    else:
        settings.acl_file.unlink(missing_ok=True)
        acl_line = "# no ACL: every client may read and write every topic (tests only)"

    values = {
        "depot": topics.depot,
        "run_as": pwd.getpwuid(os.getuid()).pw_name,
        "host": settings.host,
        "port": settings.port,
        "allow_anonymous": "true" if settings.allow_anonymous else "false",
        "password_file_line": password_line,
        "acl_file_line": acl_line,
        "persistence": "true" if settings.persistence else "false",
        # Mosquitto joins the location and the file name as they are: keep the slash.
        "persistence_location": f"{data_dir}{os.sep}",
        "autosave_interval": settings.autosave_interval,
        "persistent_client_expiration": settings.persistent_client_expiration,
        "max_queued_messages": settings.max_queued_messages,
        "max_inflight_messages": settings.max_inflight_messages,
        "max_packet_size": settings.max_packet_size,
        "log_file": settings.log_file,
        "tls_listener": render_tls_listener(settings),
    }
    conf = _substitute(_template("mosquitto.conf.tmpl"), values, "mosquitto.conf.tmpl")
    _write_private(settings.conf_file, conf)
    return settings.conf_file


# --- the process ---------------------------------------------------------------------------


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
        while time.monotonic() < deadline and str(conf) in " ".join(_cmdline(pid)):
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
        _topics(depot)
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
            _write_private(self.settings.pid_file, f"{self._process.pid}\n")
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
