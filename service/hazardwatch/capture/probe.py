"""`hazardwatch cameras --probe`: open each camera once and say what it serves, or why not.

For RTSP the probe first speaks RTSP itself (DESCRIBE, with Basic or Digest credentials
from the URL when the camera asks for them), because OpenCV reports every failure alike:
a refused connection, silence, an unknown path and a wrong password read differently
here ("authentication failed" for a 401 after credentials). The SDP answer names the
codec; OpenCV then opens the stream as the service would and reads one frame for the
resolution and frame rate. Nothing said here carries a password.
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

import cv2

from hazardwatch.capture.sources import SourceSpec, open_capture
from hazardwatch.errors import SourceError
from hazardwatch.redact import redact_text

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


def probe(spec: SourceSpec, timeout_s: float = 10.0) -> ProbeResult:
    """Open `spec` once; never raises for a bad camera."""
    codec = None
    if spec.kind == "rtsp" and not spec.target.lower().startswith("rtsps"):
        outcome = describe(spec.target, timeout_s)
        if not outcome.ok:
            return outcome
        codec = outcome.codec
    try:
        capture = open_capture(spec, timeout_s, timeout_s)
    except SourceError as exc:
        return ProbeResult(False, redact_text(str(exc)))
    try:
        ok, frame = capture.read()
        if not ok or frame is None:
            return ProbeResult(False, f"opened, but no frame arrived within {timeout_s:g} s")
        height, width = frame.shape[:2]
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0) or None
        codec = codec or _fourcc(capture.get(cv2.CAP_PROP_FOURCC))
    finally:
        capture.release()
    rate = f"{fps:.2f} fps" if fps else "frame rate unknown"
    detail = f"{codec or 'codec unknown'}, {width}x{height}, {rate}"
    return ProbeResult(True, detail, codec, int(width), int(height), fps)


def _fourcc(value: float) -> str | None:
    code = int(value)
    text = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ")
    return text.lower() if text.isprintable() and text else None


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
