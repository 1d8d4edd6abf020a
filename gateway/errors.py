"""The gateway's exception tree.

    CrossdockError (sync.errors)
     └── GatewayError          -- anything the gateway refuses; str() is one line
          ├── ConfigError      -- gateway.toml or a mapping file is wrong (file, key)
          ├── SourceError      -- a source cannot be read at all (file, row, field)
          │    └── NotReady    -- a drop is still being written; read it on a later run
          ├── StoreError       -- the gateway's SQLite store refused an operation
          ├── WritebackError   -- driver results could not be written where legacy imports
          └── CommandError     -- a dispatch command that cannot be applied (the reason)
"""

from __future__ import annotations

from sync.errors import CrossdockError


class GatewayError(CrossdockError):
    """Anything the gateway refuses; ``str()`` is a one-line message."""


class ConfigError(GatewayError):
    """gateway.toml or a mapping file is wrong."""


class SourceError(GatewayError):
    """A source cannot be read at all: the run fails, changes nothing, keeps the last good data."""


class NotReady(SourceError):
    """A file drop is still being written (size or mtime not settled, no done-marker yet)."""


class StoreError(GatewayError):
    """The gateway store refused an operation.

    ``fatal``: the store cannot be written at all (a read-only file, a full disk, an I/O
    error); ``gateway run`` stops with this line rather than fail every message after it."""

    fatal: bool = False


class WritebackError(GatewayError):
    """Driver results could not be written where the legacy system imports them."""


class CommandError(GatewayError):
    """A dispatch command that cannot be applied; ``str()`` is the reason sent back."""
