"""Credential redaction for URLs and free text: RTSP and database URLs carry passwords."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

MASK = "***"

# A URL in free text: scheme:// up to whitespace. Its userinfo is everything up to the
# token's last '@', so a password holding '/', '@', '#', '?' or a quote (which break URL
# parsing) is still masked whole; text after the URL that holds an '@' before the next
# space is masked too, which errs on the safe side.
_URL = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<rest>\S*)")
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
    match = _URL.match(url)
    if match is not None:
        url = _mask_userinfo(match.group("scheme"), url[match.end("scheme") :])
    return _SECRET_QUERY.sub(lambda m: m.group("key") + MASK, url)


def redact_hook_url(url: str) -> str:
    """A webhook URL as shown: scheme, host and port only. Chat and automation hooks carry
    their secret in the path (…/hooks/T000/B000/XXXX), so the path and query are masked too."""
    shown = redact_url(url)
    scheme, sep, rest = shown.partition("://")
    if not sep:
        return MASK
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    has_more = len(rest) > len(authority)
    return f"{scheme}://{authority}" + (f"/{MASK}" if has_more else "")


def redact_text(text: str) -> str:
    """Redact every URL credential found anywhere in free text (log lines, error messages)."""
    text = _URL.sub(lambda m: _mask_userinfo(m.group("scheme"), m.group("rest")), text)
    return _SECRET_QUERY.sub(lambda m: m.group("key") + MASK, text)


_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$")


def ambiguous_credentials(url: str, *, any_scheme: bool = False) -> str | None:
    """Why a URL's user name or password cannot be told from its host and path, or None.
    A raw '/', '?' or '#' in a password ends the authority early
    (rtsp://viewer:p@ss/w#rd@host/… reads as host "ss"), so the rest of the password would
    become a host name in logs and the probe: such a URL is refused, never guessed at.
    Camera schemes only, unless `any_scheme` (database, broker and webhook settings)."""
    scheme, sep, rest = url.partition("://")
    if not sep or not (any_scheme or scheme.lower() in ("rtsp", "rtsps", "http", "https")):
        return None
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, after = rest[:end], rest[end:]
    if any_scheme:
        # A service's path or query may hold '@' (…?mail=a@b): only a part before it that
        # is no host[:port] ('user:pa' of user:pa/ss@host) gives a password away.
        cut_short = bool(authority) and "@" in after and "@" not in authority
        cut_short = cut_short and not _HOST_PORT.match(authority)
        ambiguous = authority.count("@") > 1 or cut_short
    else:
        ambiguous = "#" in rest or authority.count("@") > 1 or "@" in after
    if ambiguous:
        return (
            "the credentials before the host hold a raw '@', '/', ':', "
            "'#' or '?'; percent-encode those characters in the URL ('@' as %40, '/' as "
            "%2F, ':' as %3A, '#' as %23, '?' as %3F)"
        )
    return None


def _mask_userinfo(scheme: str, rest: str) -> str:
    if "@" not in rest:
        return scheme + rest
    userinfo, _, host_and_path = rest.rpartition("@")
    user, has_password, _ = userinfo.partition(":")
    if not has_password or any(ch in user for ch in "/?#"):
        return f"{scheme}{MASK}@{host_and_path}"  # a bare token, or no telling where it ends
    return f"{scheme}{user}:{MASK}@{host_and_path}"


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


class UtcFormatter(logging.Formatter):
    """Lines stamped in UTC, ISO 8601 with milliseconds and the zone, as the API and the
    database write times: 2026-11-22T15:49:01.123Z INFO    hazardwatch.app: …"""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        return stamp.replace("+00:00", "Z")


class JsonFormatter(UtcFormatter):
    """One JSON object a line (`log_format: json`) for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    """Install one stderr handler whose output is always redacted, as text or JSON lines."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_hazardwatch", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler()
    handler._hazardwatch = True  # type: ignore[attr-defined]
    handler.addFilter(RedactingFilter())
    handler.setFormatter(
        JsonFormatter()
        if log_format == "json"
        else UtcFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO: a line per webhook POST, with the hook's secret
    # path in it. Its warnings and errors still come through.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
