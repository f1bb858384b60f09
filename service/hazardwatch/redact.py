"""Credential redaction for URLs and free text: RTSP and database URLs carry passwords."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# scheme://user:password@host  or  scheme://token@host
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^/@\s]+)@")
# Query parameters that commonly carry secrets (?password=…, &token=…).
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&;](?:password|passwd|pwd|pass|token|access_token|api_key|apikey|secret|key|"
    r"auth|signature|sig)=)(?P<value>[^&;#\s]*)",
    re.IGNORECASE,
)


def redact_url(url: str) -> str:
    """Return `url` with the password (and secret query values) replaced by ***.

    The user name stays visible because operators need it to tell cameras apart.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if "@" in parts.netloc:
        userinfo, _, hostport = parts.netloc.rpartition("@")
        user = userinfo.split(":", 1)[0] if ":" in userinfo else ""
        netloc = f"{user}:{MASK}@{hostport}" if user else f"{MASK}@{hostport}"
        url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return _SECRET_QUERY.sub(lambda m: m.group("key") + MASK, url)


def redact_text(text: str) -> str:
    """Redact every URL credential found anywhere in free text (log lines, error messages)."""

    def _userinfo(match: re.Match[str]) -> str:
        userinfo = match.group("userinfo")
        if ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            return f"{match.group('scheme')}{user}:{MASK}@"
        return f"{match.group('scheme')}{MASK}@"

    text = _USERINFO.sub(_userinfo, text)
    return _SECRET_QUERY.sub(lambda m: m.group("key") + MASK, text)


class RedactingFilter(logging.Filter):
    """Logging filter that redacts credentials in the final message of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_text(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Exceptions raised by drivers often quote the URL they failed on.
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def configure_logging(level: str = "INFO") -> None:
    """Install one stderr handler whose output is always redacted."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_hazardwatch", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler()
    handler._hazardwatch = True  # type: ignore[attr-defined]
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())
