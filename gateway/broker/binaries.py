"""Where the broker's binaries are (``mosquitto``, ``mosquitto_passwd``, ``openssl``): on PATH,
then in the sbin/bin folders a gateway started by systemd or cron may lack on its PATH.
Exports ``find_binary``, ``find_mosquitto``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from gateway.errors import GatewayError

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
