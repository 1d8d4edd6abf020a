"""The tablet agent's exception tree.

    CrossdockError (sync.errors)
     └── AgentError            -- anything the agent refuses; str() is one line
          ├── ConfigError      -- the agent's TOML file is missing or wrong (file, key)
          ├── StoreError       -- the tablet's SQLite file cannot be opened or refused a write
          ├── ActionError      -- a driver action that cannot be recorded (order, field, why)
          └── SessionError     -- MQTT settings the client refuses (TLS files, host)

The CLI prints any of them as one line and exits 1.
"""

from __future__ import annotations

from sync.errors import CrossdockError


class AgentError(CrossdockError):
    """Anything the tablet agent refuses; ``str()`` is a one-line message."""


class ConfigError(AgentError):
    """The agent's config file is missing or wrong; the message names the file and the key."""


class StoreError(AgentError):
    """The tablet's SQLite store cannot be opened, or refused an operation."""


class ActionError(AgentError):
    """A driver action that cannot be recorded (unknown order, bad field or choice)."""


class SessionError(AgentError):
    """The MQTT client refused its settings (a TLS file that cannot be read, a bad host)."""
