"""RTSP spoken by hand: one DESCRIBE, with Basic or Digest credentials from the URL when the
camera asks for them. OpenCV reports every failure alike; this tells a refused connection,
silence, an unknown path and a wrong password apart ("authentication failed" for a 401
after credentials), and names the codec from the SDP. Used by the probe (`hazardwatch
cameras --probe`) and by a reader whose RTSP camera did not open. Nothing said here
carries a password.
"""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

_AUTH_PARAM = re.compile(r'(\w+)="?([^",]*)"?')
_RTPMAP = re.compile(r"^a=rtpmap:\d+\s+([A-Za-z0-9-]+)/", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    detail: str  # what it serves, or why it failed (credentials masked)
    codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None


def describe(url: str, timeout_s: float = 10.0) -> ProbeResult:  # noqa: PLR0911
    """An RTSP DESCRIBE over TCP, answering a 401 challenge with the URL's credentials."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 554
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else ""
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    clean = parts._replace(netloc=netloc).geturl()  # the URI without credentials
    where = f"{host}:{port}"
    deadline = time.monotonic() + timeout_s
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as conn:
            status, headers, body = _request(conn, clean, 1, None, deadline)
            if status == 401 and user is not None:
                challenge = headers.get("www-authenticate", "")
                authorization = _authorization(challenge, user, password, clean)
                status, headers, body = _request(conn, clean, 2, authorization, deadline)
                if status == 401:
                    return ProbeResult(
                        False,
                        f"authentication failed: {where} refused the user name or password "
                        "in the URL",
                    )
    except ConnectionRefusedError:
        return ProbeResult(False, f"connection refused by {where}: is the RTSP port right?")
    except TimeoutError:
        return ProbeResult(False, f"no answer from {where} within {timeout_s:g} s")
    except OSError as exc:
        return ProbeResult(False, f"cannot reach {where}: {exc.strerror or exc}")
    except ValueError as exc:  # not RTSP
        return ProbeResult(False, f"{where} does not answer RTSP: {exc}")
    if status == 401:
        return ProbeResult(
            False, "authentication required: put user:password in the URL (percent-encoded)"
        )
    if status == 404:
        return ProbeResult(False, f"stream path {parts.path or '/'!r} not found on {where}")
    if status != 200:
        return ProbeResult(False, f"{where} answered RTSP {status} to DESCRIBE")
    match = _RTPMAP.search(body)
    codec = match.group(1).lower() if match else None
    return ProbeResult(True, f"RTSP stream {codec or 'of unknown codec'}", codec)


def _request(
    conn: socket.socket, uri: str, cseq: int, authorization: str | None, deadline: float
) -> tuple[int, dict[str, str], str]:
    lines = [f"DESCRIBE {uri} RTSP/1.0", f"CSeq: {cseq}", "Accept: application/sdp"]
    lines.append("User-Agent: hazardwatch-probe")
    if authorization:
        lines.append(f"Authorization: {authorization}")
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += _recv(conn, deadline)
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    fields = status_line.split(" ", 2)
    if len(fields) < 2 or not fields[0].startswith("RTSP/") or not fields[1].isdigit():
        raise ValueError(f"unexpected answer {status_line[:40]!r}")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    length = int(headers.get("content-length", "0") or 0)
    while len(rest) < length:
        rest += _recv(conn, deadline)
    return int(fields[1]), headers, rest[:length].decode("utf-8", "replace")


def _recv(conn: socket.socket, deadline: float) -> bytes:
    conn.settimeout(max(0.05, deadline - time.monotonic()))
    chunk = conn.recv(65536)
    if not chunk:
        raise ValueError("the connection closed mid-answer")
    return chunk


def _authorization(challenge: str, user: str, password: str, uri: str) -> str:
    """Basic or Digest (RFC 2617, MD5, qop auth or none) for a WWW-Authenticate challenge."""
    scheme, _, rest = challenge.partition(" ")
    if scheme.lower() == "basic":
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    params: dict[str, Any] = dict(_AUTH_PARAM.findall(rest))
    realm, nonce = params.get("realm", ""), params.get("nonce", "")

    def md5(text: str) -> str:
        return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

    ha1 = md5(f"{user}:{realm}:{password}")
    ha2 = md5(f"DESCRIBE:{uri}")
    fields = [f'username="{user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
    if "auth" in str(params.get("qop", "")).split(","):
        cnonce, nc = hashlib.sha1(str(time.time()).encode()).hexdigest()[:16], "00000001"
        response = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        fields += [f'cnonce="{cnonce}"', f"nc={nc}", "qop=auth"]
    else:
        response = md5(f"{ha1}:{nonce}:{ha2}")
    fields.append(f'response="{response}"')
    if "opaque" in params:
        fields.append(f'opaque="{params["opaque"]}"')
    return "Digest " + ", ".join(fields)
