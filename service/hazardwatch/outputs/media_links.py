"""Signed, expiring links to event media, for places that cannot send a bearer token.

With `api.token` set, a browser opening a snapshot from a webhook, an MQTT message or the
events list has no Authorization header to send. Such links carry `exp` (Unix time) and
`sig` (HMAC-SHA256 of the path and `exp`, keyed by a key derived from the API token); the
API accepts them for media paths only, until they expire (`api.media_url_ttl_s`).
Without a token, links are plain paths.
"""

from __future__ import annotations

import hashlib
import hmac
import time

_KEY_CONTEXT = b"hazardwatch media links v1"
MAX_EXP_DIGITS = 12  # Unix seconds until the year 33658
SIG_HEX_LENGTH = 64  # SHA-256 as hex


class MediaSigner:
    def __init__(self, token: str | None, ttl_s: float = 7 * 86_400) -> None:
        # A key of its own: a leaked link never reveals anything usable as the token.
        self._key = (
            hmac.new(token.encode(), _KEY_CONTEXT, hashlib.sha256).digest() if token else None
        )
        self.ttl_s = ttl_s

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def _sig(self, path: str, exp: int) -> str:
        assert self._key is not None
        return hmac.new(self._key, f"{path}\n{exp}".encode(), hashlib.sha256).hexdigest()

    def link(self, path: str, now: float | None = None) -> str:
        """`path` as a link: signed and expiring when a token is set."""
        if self._key is None:
            return path
        exp = int((time.time() if now is None else now) + self.ttl_s)
        return f"{path}?exp={exp}&sig={self._sig(path, exp)}"

    def verify(self, path: str, exp: str | None, sig: str | None, now: float | None = None) -> bool:
        """True for a link this signer made for `path` that has not expired; False — never
        an exception — for anything else a stranger may send: a non-ASCII digit ("²"), an
        expiry of thousands of digits, a signature that is not hex."""
        if self._key is None or not exp or not sig:
            return False
        if not (exp.isascii() and exp.isdigit() and len(exp) <= MAX_EXP_DIGITS):
            return False
        if not (sig.isascii() and len(sig) == SIG_HEX_LENGTH):
            return False
        expires = int(exp)
        if expires < (time.time() if now is None else now):
            return False
        return hmac.compare_digest(self._sig(path, expires), sig)
