"""gateway.toml: the depot's settings, one frozen object validated by pydantic.

Paths in the file are relative to the file's folder. ``crossdock gateway init`` writes a
commented example; ``crossdock gateway sample`` writes one pointing at a generated export.

    depot = "depot-1"
    db = "gateway.sqlite"

    [broker]
    url = ""                  # "mqtt://host:port" of a running broker; empty = run Mosquitto
    host = "127.0.0.1"        # where the managed Mosquitto listens
    port = 1883
    data_dir = "broker"
    # TLS for the tablets (all of tls_port, certfile, keyfile, or none; see README "TLS"):
    tls_port = 8883
    tls_host = "0.0.0.0"      # where the TLS listener listens (every interface)
    certfile = "broker-cert.pem"
    keyfile = "broker-key.pem"
    public_host = "192.168.1.10"   # the name or IP tablets reach this box by
    ca_file = "broker-cert.pem"    # what tablets trust (default: certfile, as self-signed)

    [policy]
    escalate_after_min = 30   # an open conflict puts its stop on hold after this
    shift_cap_h = 10

    [[sources]]
    name = "legacy"
    kind = "foxpro"           # foxpro | csv | odbc | http
    path = "export/orders.dbf"
    mapping = "legacy.mapping.toml"
    cron = "30 0 * * *"       # or: interval_s = 300

    [writeback]
    kind = "dbf"              # csv | dbf | odbc
    path = "import"

    [board]                   # the dispatch board, served by `gateway run`
    host = "127.0.0.1"        # beyond loopback: certfile and keyfile (HTTPS) are required
    port = 8080
"""

from __future__ import annotations

import ipaddress
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.errors import ConfigError
from sync.model import DEFAULT_RULES, Policy, SourceMode, SupersessionRule


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


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_plain_listener(host: str, allowed: bool) -> None:
    """ValueError when the plain (unencrypted) listener is bound beyond loopback and the
    config does not say ``allow_plain_beyond_loopback = true`` (DESIGN.md §6: TLS on every
    listener that leaves the box)."""
    if not allowed and not is_loopback(host):
        raise ValueError(
            f"the plain MQTT listener on {host} would carry passwords unencrypted beyond this "
            "box; bind it to 127.0.0.1 and give tablets the TLS listener (tls_port), or set "
            "allow_plain_beyond_loopback = true")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BrokerSection(_Model):
    url: str = ""
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    data_dir: str = "broker"
    username: str = "gateway"
    password: str = ""
    max_queued_messages: int = Field(default=100_000, ge=1)
    # TLS listener for the tablets (DESIGN §6); files are relative to gateway.toml.
    tls_port: int | None = Field(default=None, ge=1, le=65535)
    tls_host: str = "0.0.0.0"
    certfile: str | None = None
    keyfile: str | None = None
    # What a tablet's config gets: the name or IP tablets reach this box by, and the
    # certificate they trust (a self-signed certificate is its own CA: default certfile).
    public_host: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,253}$")
    ca_file: str | None = None
    # A plain listener beyond loopback (host not 127.0.0.1/::1/localhost) only if said so.
    allow_plain_beyond_loopback: bool = False

    @model_validator(mode="after")
    def _tls_all_or_none(self) -> BrokerSection:
        check_tls_listener(self.port, self.tls_port, self.certfile, self.keyfile)
        if not self.url:  # only a listener this gateway runs is bound by it
            check_plain_listener(self.host, self.allow_plain_beyond_loopback)
        return self

    @field_validator("url")
    @classmethod
    def _mqtt_url(cls, url: str) -> str:
        if url:
            parts = urlsplit(url)
            try:
                parts.port  # noqa: B018 — raises on a port that is not a number
            except ValueError:
                raise ValueError(f"{url!r}: want mqtt://host:port") from None
            if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
                raise ValueError(f"{url!r}: want mqtt://host:port")
        return url

    @property
    def address(self) -> tuple[str, int]:
        """Where the gateway's broker listens for the gateway and dispatch: ``url`` (a broker
        run elsewhere) or the managed one's ``host``/``port``."""
        if self.url:
            parts = urlsplit(self.url)
            return parts.hostname or self.host, parts.port or 1883
        return self.host, self.port

    @property
    def tablet_ca_file(self) -> str | None:
        """What tablets must trust: ``ca_file``, else the (self-signed) ``certfile``."""
        return self.ca_file or self.certfile


class PolicySection(_Model):
    escalate_after_min: float = Field(default=30, gt=0)
    shift_cap_h: float = Field(default=10, gt=0)
    approval_window_min: float = Field(default=30, gt=0)
    approval_expiry: Literal["reject", "apply"] = "reject"
    changelog_keep: int = Field(default=5000, ge=10)
    rules: tuple[SupersessionRule, ...] | None = None
    """Named supersession rules (DESIGN §3), shown on screen under their names. Absent: the
    default ``driver-outcome-over-older-export``; ``rules = []``: none, every such case is a
    conflict for a person."""


SourceKind = Literal["foxpro", "csv", "odbc", "http"]


class SourceSection(_Model):
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    kind: SourceKind
    mapping: str | None = None
    mode: SourceMode = "live"
    approval_window_s: float = Field(default=1800, gt=0)
    claims_as: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    # trust: an export that would withdraw more than this share of the source's live orders
    # is held (suspect) until a person accepts it; more than ``refuse_share`` of the rows
    # failing the same way at the byte level (an undecodable byte, dirt in one field) refuses
    # the file instead of quarantining most of it
    withdraw_share: float = Field(default=0.2, ge=0, le=1)
    refuse_share: float = Field(default=0.5, gt=0, le=1)
    # file sources
    path: str | None = None
    encoding: str = "cp1252"
    delimiter: str = ","
    settle_s: float = 2.0
    done_marker: str | None = None
    # odbc
    connection: str | None = None
    query: str | None = None
    # http
    url: str | None = None
    endpoints: tuple[str, ...] = ()
    token: str | None = None
    rate_per_s: float = Field(default=5.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)
    # schedule
    cron: str | None = None
    interval_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _needs(self) -> SourceSection:
        need = {
            "foxpro": ("path",),
            "csv": ("path",),
            "odbc": ("connection", "query"),
            "http": ("url",),
        }[self.kind]
        for key in need:
            if getattr(self, key) is None:
                raise ValueError(f"a {self.kind} source needs {key!r}")
        if self.kind != "http" and self.mapping is None:
            raise ValueError(f"a {self.kind} source needs a 'mapping' file")
        return self

    @property
    def claim_source(self) -> str:
        """The source name its claims carry: ``claims_as`` (e.g. "legacy"), else its name."""
        return self.claims_as or self.name


class WritebackSection(_Model):
    kind: Literal["csv", "dbf", "odbc"] = "csv"
    path: str | None = None  # csv: the drop folder; dbf: the table (or a folder: results.dbf)
    connection: str | None = None
    table: str = "CROSSDOCK_RESULTS"
    # the zone of the legacy system's naive times; default: the first mapped source's zone
    timezone: str | None = None


class BoardSection(_Model):
    """``[board]``: the dispatch board (``gateway/board``), served by ``gateway run``."""

    host: str = "127.0.0.1"   # loopback by default; beyond it needs certfile and keyfile
    port: int = Field(default=8080, ge=1, le=65535)
    certfile: str | None = None   # TLS (the depot's certificate), relative to gateway.toml
    keyfile: str | None = None
    timezone: str | None = None   # the depot's zone; default: the first mapped source's
    session_hours: float = Field(default=12, gt=0)

    @model_validator(mode="after")
    def _tls_beyond_loopback(self) -> BoardSection:
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("certfile and keyfile go together")
        if self.certfile is None and not _loopback(self.host):
            raise ValueError(f"host {self.host!r} is beyond loopback: set certfile and keyfile "
                             "(the board is served over TLS there), or bind 127.0.0.1")
        return self


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class GatewayConfig(_Model):
    depot: str = Field(default="depot-1", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    db: str = "gateway.sqlite"
    broker: BrokerSection = BrokerSection()
    policy: PolicySection = PolicySection()
    sources: tuple[SourceSection, ...] = ()
    writeback: WritebackSection | None = None
    board: BoardSection | None = None
    base_dir: str = "."

    @model_validator(mode="after")
    def _unique(self) -> GatewayConfig:
        names = [s.name for s in self.sources]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"source name {sorted(dup)[0]!r} is used twice")
        return self

    def path(self, relative: str) -> Path:
        """A path from the file, resolved against the file's folder."""
        p = Path(relative)
        return p if p.is_absolute() else Path(self.base_dir) / p

    @property
    def db_path(self) -> Path:
        return self.path(self.db)

    def source(self, name: str) -> SourceSection:
        for s in self.sources:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.sources) or "none"
        raise ConfigError(f"no source named {name!r} in the config (sources: {known})")

    def merge_policy(self) -> Policy:
        return Policy(
            escalate_after=timedelta(minutes=self.policy.escalate_after_min),
            shift_cap=timedelta(hours=self.policy.shift_cap_h),
            rules=DEFAULT_RULES if self.policy.rules is None else self.policy.rules,
        )


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's table; ConfigError (naming the file) when it cannot be read or parsed."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"config {path}: cannot read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {path}: not valid TOML: {exc}") from None


def load_config(path: Path) -> GatewayConfig:
    """Read gateway.toml; ConfigError names the file and the key that is wrong."""
    data = read_toml(path)
    data["base_dir"] = str(path.resolve().parent)
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "file"
        raise ConfigError(f"config {path}: {where}: {err['msg']}") from None
