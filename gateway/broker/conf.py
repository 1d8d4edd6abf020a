"""The managed Mosquitto's files, rendered (DESIGN.md §4, §6): settings, identities, config,
password file and ACL, from the templates in ``gateway/broker/templates/`` (package data).

* ``BrokerSettings`` -- one frozen, validated settings object (the ``[broker]`` table): a
  plain listener on ``host`` (loopback: the gateway and dispatch on this box) and, with
  ``tls_port``/``certfile``/``keyfile``, a TLS listener on ``tls_host`` for the tablets
  (DESIGN.md §6: TLS on every listener that leaves the box).
* ``BrokerUser`` -- one MQTT identity: the gateway, a dispatch console or one tablet.
* ``write_config(settings, users, depot)`` -- ``mosquitto.conf``, the password file (salted
  hashes only, ``gateway.credentials``: a user given as a plain password is hashed in memory;
  a tablet's comes from the store already hashed) and the ACL, all 0600 in
  ``settings.data_dir`` (0700).

The process itself is ``gateway.broker.process.ManagedBroker``.

The templates are package data (``importlib.resources``): a checkout, an editable install and a
wheel read the same files. ``packaging/mosquitto/README.md`` describes them.

Every failure is a ``GatewayError`` with a one-line message (``ConfigError`` for settings or
identities that cannot work).
"""

from __future__ import annotations

import logging
import os
import pwd
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from string import Template
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

from gateway.config import check_plain_listener, check_tls_listener
from gateway.credentials import hash_password, is_hashed
from gateway.errors import ConfigError, GatewayError
from gateway.private import private_dir, write_private
from sync.codec import DEFAULT_MAX_BYTES
from sync.errors import SyncError
from sync.topics import Topics, check_segment

__all__ = [
    "TEMPLATE_DIR",
    "BrokerSettings",
    "BrokerUser",
    "depot_topics",
    "render_acl",
    "render_tls_listener",
    "write_config",
]

log = logging.getLogger(__name__)

TEMPLATE_DIR = resources.files("gateway.broker") / "templates"
"""Where ``mosquitto.conf.tmpl`` and ``acl.tmpl`` live (a checkout or an editable install)."""

Role = Literal["gateway", "dispatch", "device"]
_ROLE_ORDER: dict[str, int] = {"gateway": 0, "dispatch": 1, "device": 2}

# A PUBLISH packet is its payload plus the topic (at most 65535 bytes), a fixed header and
# properties; the payload limit itself is enforced by sync.codec on decode.
_PACKET_HEADROOM = 64 * 1024 + 1024
_EXPIRATION = re.compile(r"^[1-9][0-9]*[hdwmy]$")
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_HOST = re.compile(r"^[A-Za-z0-9_.:-]{1,253}$")
_SECTION = re.compile(r"^## role: (\w+)\s*$")


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
    # The plain listener is refused beyond loopback unless this says so (DESIGN.md §6).
    allow_plain_beyond_loopback: bool = False
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
        check_plain_listener(self.host, self.allow_plain_beyond_loopback)
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
    password: SecretStr | None = None
    # or the password's salted hash (``gateway.credentials``), as the store keeps a tablet's
    password_hash: str | None = None
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
    def _password_fits_the_file(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return value
        secret = value.get_secret_value()
        if not secret:
            raise ValueError("password must not be empty")
        if any(ch in secret for ch in ":\n\r\0"):
            raise ValueError("password must not contain ':', a line break or NUL")
        return value

    @field_validator("password_hash")
    @classmethod
    def _hash_is_a_hash(cls, value: str | None) -> str | None:
        if value is not None and not is_hashed(value):
            raise ValueError("password_hash is not a $7$ hash")
        return value

    @model_validator(mode="after")
    def _one_password(self) -> Self:
        if (self.password is None) == (self.password_hash is None):
            raise ValueError(f"user {self.username!r} needs a password or a password_hash")
        return self

    def hashed(self) -> str:
        """The password's salted hash (made now from a plain password)."""
        if self.password_hash is not None:
            return self.password_hash
        assert self.password is not None  # _one_password
        return hash_password(self.password.get_secret_value())

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


# --- config files --------------------------------------------------------------------------


def _template(name: str) -> str:
    path = TEMPLATE_DIR / name
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GatewayError(
            f"cannot read broker template {path}: {exc.strerror}; "
            "reinstall crossdock (the templates are part of the gateway package)"
        ) from exc


def _substitute(template: str, values: Mapping[str, object], name: str) -> str:
    try:
        return Template(template).substitute(values)
    except (KeyError, ValueError) as exc:
        raise GatewayError(f"broker template {name} has an unknown placeholder: {exc}") from exc


def depot_topics(depot: str) -> Topics:
    """The depot's topics; ConfigError if ``depot`` cannot be one topic segment."""
    try:
        return Topics(depot)
    except SyncError as exc:
        raise ConfigError(str(exc)) from exc


def render_acl(users: Sequence[BrokerUser], depot: str) -> str:
    """The ACL text for ``users`` from ``acl.tmpl``: one block per identity, gateway first."""
    topics = depot_topics(depot)
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


def _write_password_file(path: Path, users: Sequence[BrokerUser]) -> None:
    """``username:$7$...`` per user: salted hashes only, never a plain password on disk."""
    write_private(path, "".join(f"{user.username}:{user.hashed()}\n" for user in users))


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
    topics = depot_topics(depot)
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
    data_dir = private_dir(settings.data_dir)

    if users:
        _write_password_file(settings.password_file, users)
        password_line = f"password_file {settings.password_file}"
    else:
        settings.password_file.unlink(missing_ok=True)
        password_line = "# no password file: no identities configured"
    if settings.acl:
        write_private(settings.acl_file, render_acl(users, depot))
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
        "clientid_line": ("# use_username_as_clientid is off: anonymous clients are allowed"
                          if settings.allow_anonymous else "use_username_as_clientid true"),
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
    write_private(settings.conf_file, conf)
    return settings.conf_file
