"""Salted password hashes in the broker's own format (DESIGN.md §6: the gateway keeps only
hashes of passwords).

Mosquitto 2's password file holds ``username:$7$ITERATIONS$SALT$HASH``: PBKDF2-HMAC-SHA512 with
a 12-byte salt, both base64 (what ``mosquitto_passwd`` writes). The gateway stores a tablet's
password as that string, so the broker's password file is written from the store without the
password ever being kept: a tablet's own password lives only in its config file.

The passwords crossdock issues are 144-bit random tokens (``secrets.token_urlsafe(18)``), so the
hash need not be slow to be safe against guessing; ``ITERATIONS`` is ten times
``mosquitto_passwd``'s default; checking one costs about 2.4 ms of CPU (measured with
Python's hashlib on the 2-core dev box), 0.5 s for 200 tablets reconnecting at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Callable

__all__ = ["ITERATIONS", "hash_password", "is_hashed", "verify_password"]

ITERATIONS = 1010
_HASHED = re.compile(r"^\$7\$[1-9][0-9]*\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*$")


def hash_password(password: str, *, salt: Callable[[int], bytes] = os.urandom,
                  iterations: int = ITERATIONS) -> str:
    """``$7$...``: a salted PBKDF2-SHA512 hash of ``password``, as Mosquitto reads it."""
    raw = salt(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), raw, iterations)
    return (f"$7${iterations}${base64.b64encode(raw).decode('ascii')}$"
            f"{base64.b64encode(digest).decode('ascii')}")


def is_hashed(text: str) -> bool:
    """True when ``text`` is a ``$7$`` hash (not a plain password)."""
    return bool(_HASHED.match(text))


def verify_password(password: str, hashed: str) -> bool:
    """True when ``password`` is the one ``hashed`` was made from."""
    if not is_hashed(hashed):
        return False
    _empty, _seven, iterations, salt, digest = hashed.split("$")
    mine = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), base64.b64decode(salt),
                               int(iterations))
    return hmac.compare_digest(mine, base64.b64decode(digest))
