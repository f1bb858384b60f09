"""Who is asking: users with a role, their passwords and tokens, and browser sessions.

Roles rank viewer < operator < admin: a viewer sees events, media and cameras; an operator
also gives verdicts; an admin also changes what the API lets be changed. `api.users`
names them, each with a password (as an scrypt hash, `hazardwatch user hash-password`)
for the page's login form and/or a bearer token for programs. The older single
`api.token` is an admin token named `api-token`, so no deployment breaks. With neither
set the API is open (loopback only: settings refuse it on a network address) and every
caller counts as an admin named `anonymous`.

A login makes a server-side session: a random id in an HttpOnly, SameSite=Strict cookie
and a CSRF token the page sends back as `X-CSRF-Token` on every POST. Sessions live in
this process (a restart logs everyone out) and end at logout or `api.session_ttl_s`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from hazardwatch.errors import ConfigError
from hazardwatch.records import ROLES, Role

ANONYMOUS = "anonymous"  # everyone, when no token and no user is configured
TOKEN_USER = "api-token"  # the single api.token
SESSION_COOKIE = "hazardwatch_session"
CSRF_HEADER = "X-CSRF-Token"
MAX_SESSIONS = 10_000  # beyond it the oldest session ends first

# scrypt as OWASP recommends it for interactive logins (N=2^15, r=8, p=1: 32 MiB, ~50 ms).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
SCRYPT_MAXMEM = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request."""

    name: str
    role: Role

    def may(self, role: Role) -> bool:
        """Whether this caller has at least `role`."""
        return ROLES.index(self.role) >= ROLES.index(role)


def hash_password(password: str, *, n: int = SCRYPT_N) -> str:
    """`scrypt$N$r$p$salt$hash` (base64) of `password` with a fresh salt."""
    if not password:
        raise ConfigError("a password must not be empty")
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, n, SCRYPT_R, SCRYPT_P)
    return "$".join(["scrypt", str(n), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)])


def verify_password(password: str, encoded: str) -> bool:
    """Whether `password` is the one `encoded` was made from (constant-time compare)."""
    try:
        _, n, r, p, salt, digest = encoded.split("$")
        want = base64.b64decode(digest)
        got = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(got, want)


@functools.cache
def _no_user() -> str:
    """A hash no password matches: an unknown user name costs a login the same time as
    a wrong password, so timing does not tell which names exist."""
    return hash_password(secrets.token_hex(16))


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    role: Role
    password_hash: str | None = None
    token: str | None = None


class Accounts:
    """The configured users and tokens: who a token or a name and password is."""

    def __init__(self, accounts: list[Account], admin_token: str | None = None) -> None:
        self._by_name = {a.name: a for a in accounts}
        self._tokens: list[tuple[bytes, Principal]] = [
            (a.token.encode(), Principal(a.name, a.role)) for a in accounts if a.token
        ]
        if admin_token:
            self._tokens.append((admin_token.encode(), Principal(TOKEN_USER, "admin")))

    @property
    def required(self) -> bool:
        """Whether callers must say who they are (a token or a user is configured)."""
        return bool(self._tokens or self._by_name)

    def by_token(self, token: str) -> Principal | None:
        given = token.encode()
        found = None
        for expected, principal in self._tokens:  # every one compared: constant time
            if hmac.compare_digest(given, expected):
                found = principal
        return found

    def login(self, name: str, password: str) -> Principal | None:
        account = self._by_name.get(name)
        encoded = account.password_hash if account is not None else None
        ok = verify_password(password, encoded or _no_user())
        if account is None or encoded is None or not ok:
            return None
        return Principal(account.name, account.role)


@dataclass(frozen=True, slots=True)
class Session:
    principal: Principal
    csrf: str
    expires: float  # monotonic


class Sessions:
    """Browser sessions of this process, by the random id in their cookie."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def start(self, principal: Principal) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        session = Session(principal, secrets.token_urlsafe(32), time.monotonic() + self.ttl_s)
        with self._lock:
            self._sessions[sid] = session
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return sid, session

    def get(self, sid: str) -> Session | None:
        with self._lock:
            session = self._sessions.get(sid)
            if session is not None and session.expires <= time.monotonic():
                del self._sessions[sid]
                return None
            return session

    def end(self, sid: str) -> None:
        with self._lock:
            self._sessions.pop(sid, None)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=SCRYPT_MAXMEM, dklen=32
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
