"""Who may ask, and how much: the bearer token (with signed media links and public health
checks), a back-off for addresses that keep failing it, the allowed host names, and a cap
on every request body as it streams."""

from __future__ import annotations

import hmac
import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hazardwatch.api.accounts import (
    ANONYMOUS,
    CSRF_HEADER,
    SESSION_COOKIE,
    Accounts,
    Principal,
    Session,
    Sessions,
)
from hazardwatch.api.docs import DOCS_PATHS, DOCS_STATIC
from hazardwatch.api.page import PAGE_PREFIX
from hazardwatch.outputs.media_links import MediaSigner
from hazardwatch.records import Role

log = logging.getLogger(__name__)
MEDIA_PATH = re.compile(
    r"^/api/v1/(events/[0-9a-fA-F-]{8,64}/(snapshot\.jpg|clip\.mp4)"
    r"|keyframes/[0-9]{1,19}/thumbnail\.jpg)$"
)
# The health checks, and the login (it is how a caller gets to say who it is).
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/api/v1/session"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MULTIPART_SLACK = 64 * 1024  # bytes of multipart framing allowed on top of the upload limit
AUTH_FAILURES_ALLOWED = 20  # per client address and window: then 429 until it has passed
AUTH_WINDOW_S = 60.0


class Authentication(BaseHTTPMiddleware):
    """Who each request is (a bearer token, or the review page's session cookie), on
    everything but the health checks and the login; signed media links and (when
    configured) the docs and metrics pass without it. A request by cookie that changes
    something must carry its session's CSRF token. The caller is left in the request's
    scope (`caller`) for the routes' role checks."""

    def __init__(
        self,
        app: Any,
        accounts: Accounts,
        sessions: Sessions,
        signer: MediaSigner,
        docs_public: bool,
        metrics_public: bool = False,
    ) -> None:
        super().__init__(app)
        self._accounts = accounts
        self._sessions = sessions
        self._signer = signer
        self._docs_public = docs_public
        self._metrics_public = metrics_public
        self.failures = FailedAuth()

    def _open(self, request: Request) -> bool:
        path = request.url.path
        if path in PUBLIC_PATHS or request.method == "OPTIONS":
            return True
        if path == "/" or path.startswith(PAGE_PREFIX + "/"):  # the page holds no data
            return True
        if self._docs_public and (path in DOCS_PATHS or path.startswith(DOCS_STATIC + "/")):
            return True
        if self._metrics_public and path == "/metrics":
            return True
        query = request.query_params
        return MEDIA_PATH.match(path) is not None and self._signer.verify(
            path, query.get("exp"), query.get("sig")
        )

    def _who(self, request: Request) -> tuple[Principal | None, Session | None]:
        if not self._accounts.required:
            return Principal(ANONYMOUS, "admin"), None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token:
            return self._accounts.by_token(token.strip()), None
        sid = request.cookies.get(SESSION_COOKIE)
        session = self._sessions.get(sid) if sid else None
        return (session.principal, session) if session is not None else (None, None)

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        principal, session = self._who(request)
        request.scope["hazardwatch.caller"] = principal
        request.scope["hazardwatch.session"] = session
        request.scope["hazardwatch.authorised"] = principal is not None
        if self._open(request):
            return await call_next(request)
        client = request.client.host if request.client else "unknown"
        wait_s = self.failures.blocked_for(client)
        if wait_s:
            return JSONResponse(
                {"detail": "too many failed authentications from this address; retry later"},
                status_code=429,
                headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
            )
        if principal is None:
            self.failures.failed(client)
            return JSONResponse(
                {
                    "detail": "missing or wrong credentials: send Authorization: Bearer "
                    "<api.token or a user's token>, or log in on the review page"
                },
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        if session is not None and request.method not in SAFE_METHODS:
            given = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(given.encode(), session.csrf.encode()):
                return JSONResponse(
                    {"detail": f"missing or wrong {CSRF_HEADER} header for this session"},
                    status_code=403,
                )
        return await call_next(request)


def caller(request: Request) -> Principal | None:
    """Who the request is (set by `Authentication`); None on an open path without
    credentials."""
    found = request.scope.get("hazardwatch.caller")
    return found if isinstance(found, Principal) else None


def requires(role: Role) -> Callable[[Request], Principal]:
    """A route dependency: the caller, who must have at least `role` (else 403)."""

    def check(request: Request) -> Principal:
        principal = caller(request)
        if principal is None or not principal.may(role):
            who = f"; {principal.name} is a {principal.role}" if principal is not None else ""
            raise HTTPException(403, f"this needs the {role} role{who}")
        return principal

    return check


class FailedAuth:
    """Failed authentications per client address: after `limit` within `window_s` the
    address gets 429 until the window has passed; each address is logged at most once per
    window, with its count (a token guessed at, or a client with a stale one)."""

    def __init__(self, limit: int = AUTH_FAILURES_ALLOWED, window_s: float = AUTH_WINDOW_S):
        self.limit = limit
        self.window_s = window_s
        self._times: dict[str, deque[float]] = {}
        self._logged: dict[str, float] = {}

    def blocked_for(self, client: str, now: float | None = None) -> float:
        """Seconds this address must wait; 0 when it may try."""
        now = time.monotonic() if now is None else now
        times = self._times.get(client)
        if not times:
            return 0.0
        while times and now - times[0] > self.window_s:
            times.popleft()
        if not times:
            del self._times[client]
            return 0.0
        return self.window_s - (now - times[0]) if len(times) >= self.limit else 0.0

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        times = self._times.setdefault(client, deque(maxlen=self.limit))
        times.append(now)
        if len(self._times) > 10_000:  # many addresses: forget the oldest
            self._times.pop(next(iter(self._times)))
        if len(self._logged) > 10_000:
            self._logged.pop(next(iter(self._logged)))
        if now - self._logged.get(client, -self.window_s) >= self.window_s:
            self._logged[client] = now
            log.warning(
                "failed API authentication from %s (%d in the last %g s; %d allowed)",
                client,
                len(times),
                self.window_s,
                self.limit,
            )


class HostCheck:
    """Only the configured host names (`ApiSettings.hosts`): a DNS-rebinding page, whose
    own name now points here, sends its name as Host and gets a 400."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str]) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            name = name.strip("[]")
            if host and name not in self.hosts:
                shown = name[:64].encode("ascii", "replace").decode()
                body = {
                    "detail": f"host {shown!r} is not one this API answers to; add it to "
                    "api.allowed_hosts"
                }
                await JSONResponse(body, status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """Every request body capped as it streams, chunked or not: a `Content-Length` over
    the cap is refused before a byte is read, and a body that grows past it is cut off with
    a 413 there — it is never read to its end, spooled to a temporary file or held in
    memory. (Checking the header alone let a 1,000 MB chunked upload through to the disk.)
    Multipart overhead gets `MULTIPART_SLACK` on top of the upload limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes  # the upload limit, as errors say it
        self._cap = max_bytes + MULTIPART_SLACK

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self._cap:
            await too_large_response(self.max_bytes)(scope, receive, send)
            return
        received = 0
        started = False

        async def capped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._cap:
                    raise HTTPException(413, too_large(self.max_bytes))
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, capped, watched)
        except HTTPException as exc:  # raised outside the app's own error handling
            if exc.status_code != 413 or started:
                raise
            await too_large_response(self.max_bytes)(scope, receive, send)


def too_large_response(max_bytes: int) -> JSONResponse:
    return JSONResponse({"detail": too_large(max_bytes)}, status_code=413)


def too_large(max_bytes: int) -> str:
    return f"upload larger than api.max_upload_mb ({max_bytes / 1e6:.1f} MB)"
