"""The board's side of the gateway store: dispatchers' logins and their sessions.

Tables live in the gateway's SQLite file; this module holds their SQL (created on first use,
like the rest of the store: ``CREATE TABLE IF NOT EXISTS``). Passwords are kept as scrypt
hashes with a per-user salt (``hash_password``); a session is kept as the SHA-256 of its
cookie's random token, so the file never holds anything that logs in.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from gateway.errors import ConfigError
from gateway.store.core import Store

ACCOUNT_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS board_users (
        name TEXT PRIMARY KEY, password TEXT NOT NULL, created_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS board_sessions (
        token_hash TEXT PRIMARY KEY, name TEXT NOT NULL, csrf TEXT NOT NULL,
        created_at TEXT NOT NULL, expires_at TEXT NOT NULL
    )""",
)

USER_NAME = re.compile(r"^[a-z][a-z0-9._-]{0,31}$")
"""A dispatcher's login name: also the client name their commands carry (``dispatch:NAME`` in
the audit log), so one safe topic segment."""

_N, _R, _P = 2**14, 8, 1  # scrypt cost: about 16 MiB and a few tens of ms per check


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$salt$hash`` (hex) of ``password`` with a new random salt."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                             p=int(p), dklen=len(digest) // 2)
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    name: str
    csrf: str
    expires_at: _dt.datetime


class AccountStore:
    """SQL for board users and sessions, on a Store's connection."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.conn = store.conn
        for statement in ACCOUNT_SCHEMA:
            self.conn.execute(statement)

    def add_user(self, name: str, password: str, now: _dt.datetime, *,
                 replace: bool = False) -> bool:
        """Store ``name``'s login; False when the name exists and ``replace`` is not set."""
        if not USER_NAME.match(name):
            raise ConfigError(f"user name {name!r}: want a lower-case letter, then letters, "
                              "digits, '.', '_' or '-' (at most 32)")
        if len(password) < 8:
            raise ConfigError(f"password for {name}: at least 8 characters")
        hashed = hash_password(password)
        with self.store.transaction():
            if self.conn.execute("SELECT 1 FROM board_users WHERE name=?", (name,)).fetchone():
                if not replace:
                    return False
                self.conn.execute("UPDATE board_users SET password=? WHERE name=?",
                                  (hashed, name))
                self.conn.execute("DELETE FROM board_sessions WHERE name=?", (name,))
            else:
                self.conn.execute(
                    "INSERT INTO board_users(name, password, created_at) VALUES(?,?,?)",
                    (name, hashed, now.isoformat()))
            self.store.audit(now, "cli", "board-user-add", name=name, replaced=replace)
        return True

    def users(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT name FROM board_users ORDER BY name")]

    def check_login(self, name: str, password: str) -> bool:
        row = self.conn.execute("SELECT password FROM board_users WHERE name=?",
                                (name,)).fetchone()
        if row is None:
            check_password(password, _DUMMY)  # the same work for an unknown name
            return False
        return check_password(password, str(row[0]))

    def open_session(self, name: str, now: _dt.datetime, hours: float) -> tuple[str, Session]:
        """A new session for ``name``: (the cookie's token, the session)."""
        token = secrets.token_urlsafe(32)
        session = Session(name, secrets.token_urlsafe(24), now + _dt.timedelta(hours=hours))
        with self.store.transaction():
            self.conn.execute("DELETE FROM board_sessions WHERE expires_at <= ?",
                              (now.isoformat(),))
            self.conn.execute(
                "INSERT INTO board_sessions(token_hash, name, csrf, created_at, expires_at) "
                "VALUES(?,?,?,?,?)",
                (token_hash(token), name, session.csrf, now.isoformat(),
                 session.expires_at.isoformat()))
            self.store.audit(now, f"board:{name}", "login")
        return token, session

    def session(self, token: str, now: _dt.datetime) -> Session | None:
        """The live session of a cookie's token (None: unknown, expired, or user removed)."""
        row = self.conn.execute(
            "SELECT s.name, s.csrf, s.expires_at FROM board_sessions s "
            "JOIN board_users u ON u.name = s.name WHERE s.token_hash=?",
            (token_hash(token),)).fetchone()
        if row is None:
            return None
        session = Session(str(row[0]), str(row[1]), _dt.datetime.fromisoformat(row[2]))
        return session if session.expires_at > now else None

    def close_session(self, token: str, now: _dt.datetime) -> None:
        with self.store.transaction():
            row = self.conn.execute("SELECT name FROM board_sessions WHERE token_hash=?",
                                    (token_hash(token),)).fetchone()
            self.conn.execute("DELETE FROM board_sessions WHERE token_hash=?",
                              (token_hash(token),))
            if row is not None:
                self.store.audit(now, f"board:{row[0]}", "logout")


_DUMMY = hash_password("not a password", salt=b"\0" * 16)
