"""The installed crossdock's version, as one string for everything that reports or keys on it.

The gateway's status message, the tablet's status message and a source's record memory
(``gateway.store.records``) all name the version of the code that wrote them; ``crossdock
--version`` reads the same metadata through click.
"""

from __future__ import annotations

import functools
import importlib.metadata

__all__ = ["UNKNOWN", "package_version"]

UNKNOWN = "0+unknown"
"""The version of a source tree run without being installed (a PEP 440 local version of 0;
``gateway.streams.wire.older_than`` cannot read its parts and treats its sender as current)."""


@functools.cache
def package_version() -> str:
    """The installed package's version (``pyproject.toml``'s), or ``UNKNOWN``."""
    try:
        return importlib.metadata.version("crossdock")
    except importlib.metadata.PackageNotFoundError:
        return UNKNOWN
