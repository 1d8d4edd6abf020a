"""The agent's settings, loaded from the TOML file the gateway writes for each device.

The file format (keys exactly as the gateway writes them)::

    depot = "depot-1"
    device = "tab-07"
    driver = "7"
    db = "tab-07.sqlite"        # relative to the config file's folder
    timezone = "Europe/Berlin"  # optional (UTC): the depot's zone, in which screens show times
    driver_resolves = []        # optional: fields the depot lets drivers resolve on the tablet
    [broker]
    host = "127.0.0.1"
    port = 1883
    username = "tab-07"        # optional
    password = "..."           # optional
    tls = false
    ca_file = "..."            # optional, relative to the config file's folder
    [sync]
    session_expiry_s = 604800   # persistent MQTT session: survives a shift offline
    resync_quiet_s = 30         # ask for seq > last after this long without stream progress
    backoff_min_s = 0.5
    backoff_max_s = 30

``load_config`` raises ``ConfigError`` with one line naming the file and the key.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.errors import ConfigError
from sync.errors import SyncError
from sync.topics import check_segment
from sync.zones import ZoneName


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BrokerConfig(_Settings):
    host: str = Field(min_length=1)
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: Path | None = None


class SyncConfig(_Settings):
    session_expiry_s: int = Field(default=604800, ge=0, le=0xFFFFFFFF)
    resync_quiet_s: float = Field(default=30, gt=0)
    backoff_min_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30, gt=0)

    @model_validator(mode="after")
    def _backoff_order(self) -> SyncConfig:
        if self.backoff_min_s > self.backoff_max_s:
            raise ValueError("backoff_min_s must not exceed backoff_max_s")
        return self


class AgentConfig(_Settings):
    """One tablet's settings. ``db`` and ``broker.ca_file`` are absolute once loaded."""

    depot: str
    device: str
    driver: str = Field(min_length=1, max_length=128)
    db: Path
    broker: BrokerConfig
    sync: SyncConfig = SyncConfig()
    timezone: ZoneName = "UTC"
    driver_resolves: tuple[str, ...] = ()

    @field_validator("depot", "device")
    @classmethod
    def _segment(cls, value: str) -> str:
        try:
            return check_segment(value, "id")
        except SyncError as exc:
            raise ValueError(str(exc)) from None


def load_config(path: str | Path) -> AgentConfig:
    """Read and validate an agent config file; relative paths are taken from its folder."""
    file = Path(path)
    try:
        with file.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"agent config {file}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"agent config {file}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"agent config {file}: not valid TOML: {exc}") from None
    try:
        config = AgentConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(file)"
        raise ConfigError(f"agent config {file}: {key}: {err['msg']}") from None
    base = file.resolve().parent
    broker = config.broker
    if broker.ca_file is not None:
        broker = broker.model_copy(update={"ca_file": base / broker.ca_file})
    return config.model_copy(update={"db": base / config.db, "broker": broker})
