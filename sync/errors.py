"""The exception tree of the sync core.

    CrossdockError            -- base of every error crossdock raises on purpose
     └── SyncError            -- the pure core refused an input
          ├── CodecError      -- bytes that are not a valid envelope (reason says why)
          └── StreamError     -- a stream entry or request that cannot be honoured

Other packages derive their own trees from CrossdockError, so a CLI can turn any of them into a
one-line message and exit 1.
"""

from __future__ import annotations


class CrossdockError(Exception):
    """Base of every error crossdock raises on purpose; ``str()`` is a one-line message."""


class SyncError(CrossdockError):
    """The pure core refused an input."""


class CodecError(SyncError):
    """Bytes that cannot be decoded into a valid envelope.

    ``reason`` is a short machine-friendly tag (``too-large``, ``not-json``, ``bad-version``,
    ``unknown-kind``, ``invalid``); the message says what was wrong in one line.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class StreamError(SyncError):
    """A stream entry or request that cannot be honoured."""
