"""A self-signed certificate for the managed broker's TLS listener (DESIGN.md §6).

``crossdock gateway tls-cert`` calls ``make_self_signed``: the ``openssl`` binary makes an EC
(P-256) key and a certificate naming every host tablets may use to reach the box
(``subjectAltName``: ``DNS:`` for names, ``IP:`` for addresses). A self-signed certificate is
its own CA: tablets trust exactly this certificate (``ca_file``), nothing else.

The key is written with mode 0600. Existing files are never replaced unless asked: a new
certificate locks out every tablet that trusts the old one until its config is rewritten.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.broker.binaries import find_binary
from gateway.errors import ConfigError, GatewayError

__all__ = ["CERT_NAME", "KEY_NAME", "TlsFiles", "find_openssl", "make_self_signed", "san_entry"]

CERT_NAME = "broker-cert.pem"
"""The certificate's file name beside gateway.toml; also what tablets trust."""
KEY_NAME = "broker-key.pem"
"""The private key's file name beside gateway.toml (mode 0600)."""

_DNS_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


@dataclass(frozen=True)
class TlsFiles:
    """What ``make_self_signed`` wrote."""

    certfile: Path
    keyfile: Path
    hosts: tuple[str, ...]


def find_openssl() -> Path:
    """The ``openssl`` binary; GatewayError "openssl is not installed: apt-get install openssl"."""
    return find_binary("openssl", package="openssl")


def san_entry(host: str) -> str:
    """``IP:addr`` for an IPv4/IPv6 address, ``DNS:name`` for a host name; ConfigError else."""
    try:
        return f"IP:{ipaddress.ip_address(host)}"
    except ValueError:
        pass
    if not _DNS_NAME.match(host):
        raise ConfigError(f"{host!r} is neither an IP address nor a host name")
    return f"DNS:{host}"


def make_self_signed(
    directory: Path,
    hosts: Sequence[str],
    *,
    days: int = 825,
    common_name: str = "crossdock broker",
    overwrite: bool = False,
) -> TlsFiles:
    """Write ``broker-cert.pem`` and ``broker-key.pem`` (0600) into ``directory``.

    ``hosts`` are the names and addresses the certificate is valid for (at least one).
    Raises ConfigError for a bad host or existing files (unless ``overwrite``), GatewayError
    when openssl is missing or fails.
    """
    if not hosts:
        raise ConfigError("name at least one host (name or IP) tablets use to reach the broker")
    if not 1 <= days <= 36500:
        raise ConfigError(f"days must be between 1 and 36500, not {days}")
    if not re.fullmatch(r"[A-Za-z0-9 _.-]{1,64}", common_name):
        raise ConfigError(f"common name {common_name!r}: letters, digits, space and _ . - only")
    unique = tuple(dict.fromkeys(hosts))
    san = ",".join(san_entry(host) for host in unique)
    certfile, keyfile = directory / CERT_NAME, directory / KEY_NAME
    if not overwrite:
        for path in (certfile, keyfile):
            if path.exists():
                raise ConfigError(
                    f"{path} exists; tablets trusting it would be locked out by a new one "
                    "(pass --force to replace it, then rewrite every tablet's config)"
                )
    openssl = find_openssl()
    directory.mkdir(parents=True, exist_ok=True)
    # A private scratch folder in the target directory: the key is never readable by others,
    # and the final rename is atomic.
    with tempfile.TemporaryDirectory(dir=directory, prefix=".tls-") as scratch:
        new_cert, new_key = Path(scratch) / CERT_NAME, Path(scratch) / KEY_NAME
        command = [
            str(openssl), "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-sha256",
            "-days", str(days), "-subj", f"/CN={common_name}",
            "-addext", f"subjectAltName={san}",
            "-keyout", str(new_key), "-out", str(new_cert),
        ]
        try:
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except OSError as exc:
            raise GatewayError(f"cannot run {openssl}: {exc.strerror}") from None
        if result.returncode != 0:
            reason = " | ".join(
                line.strip() for line in result.stderr.splitlines() if line.strip("- \t")
            )
            raise GatewayError(f"openssl could not make the certificate: {reason}")
        os.chmod(new_key, 0o600)
        os.chmod(new_cert, 0o644)
        os.replace(new_key, keyfile)
        os.replace(new_cert, certfile)
    return TlsFiles(certfile=certfile, keyfile=keyfile, hosts=unique)
