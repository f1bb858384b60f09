"""The HTTP API: health, metrics, events and their media, cameras, and scoring an upload.

Built by `create_app` over an `ApiState` that the service fills in as it starts, so the
same app serves a half-started service (and says so in /readyz). Bearer-token auth, when
configured, covers everything but the health checks; media paths are resolved inside the
media directory and can never escape it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy.typing as npt
import sqlalchemy as sa
from fastapi import Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exception_handlers import http_exception_handler
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hazardwatch import __version__
from hazardwatch.api.errors import problem, unprocessable
from hazardwatch.api.overlay import decode_upload, hazard_mask, hazard_overlay
from hazardwatch.capture.fleet import Cameras, NoCameras
from hazardwatch.capture.reader import camera_problems
from hazardwatch.detect.normal import decode_embedding
from hazardwatch.errors import ConfigError
from hazardwatch.handoff.status import STATUS_TTL_S, StatusBoard
from hazardwatch.metrics import CONTENT_TYPE, Metrics
from hazardwatch.outputs.alerts import event_json
from hazardwatch.outputs.media_links import MediaSigner
from hazardwatch.outputs.writer import EventWriter
from hazardwatch.records import EventRecord, EventStatus, Verdict
from hazardwatch.redact import redact_text
from hazardwatch.scoring.worker import ScoringWorker
from hazardwatch.settings import ApiSettings
from hazardwatch.storage.repository import MAX_PAGE, Repository

log = logging.getLogger(__name__)
UUID_RE = re.compile(r"^[0-9a-fA-F-]{8,64}$")
RETRY_AFTER_S = "5"  # seconds, on every 503
DOCS_STATIC = "/docs-static"
DOCS_PATHS = frozenset({"/docs", "/redoc", "/openapi.json"})
MEDIA_PATH = re.compile(r"^/api/v1/events/[0-9a-fA-F-]{8,64}/(snapshot\.jpg|clip\.mp4)$")
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
MULTIPART_SLACK = 64 * 1024  # bytes of multipart framing allowed on top of the upload limit
SCORING_AT_ONCE = 2  # uploads decoded and scored at the same time (the rest wait their turn)
AUTH_FAILURES_ALLOWED = 20  # per client address and window: then 429 until it has passed
AUTH_WINDOW_S = 60.0


@dataclass
class ApiState:
    """What the API reads; the service sets the parts as they come up."""

    repository: Repository
    media_dir: Path
    metrics: Metrics
    cameras: Cameras = field(default_factory=NoCameras)  # readers, and cameras never run
    # The events role: cameras and scoring run on other nodes, not in this process; what
    # they report comes through the status bucket.
    scoring_elsewhere: bool = False
    status: StatusBoard | None = None
    worker: ScoringWorker | None = None
    writer: EventWriter | None = None
    # Teaches a camera a normal sight (false-alarm feedback); returns its reference count.
    learn_normal: Callable[[str, npt.NDArray[Any]], int] | None = None
    # Signs media links when a token is set (alerts and the events list carry them).
    signer: MediaSigner = field(default_factory=lambda: MediaSigner(None))
    # A camera's calibration (calibrated, when, on how many seconds, references).
    calibration: Callable[[str], dict[str, Any]] | None = None
    # What decides each class of a camera now (detect/stage.py: DetectorStage.explain).
    explain: Callable[[str], dict[str, Any] | None] | None = None
    # Seconds until an event's clip should be stored; None when none is coming.
    clip_pending: Callable[[str], float | None] = lambda uuid: None


class ErrorBody(BaseModel):
    """Every error but a 422: what went wrong and how to fix it."""

    detail: str


class Readiness(BaseModel):
    status: str = Field(description="ready, or degraded with the reasons")
    reasons: list[str]


def _iso_time(value: Any) -> Any:
    """Query times must be ISO 8601 text: pydantic would read "0.5" as a Unix time."""
    if isinstance(value, str) and not re.match(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}", value):
        raise ValueError("use ISO 8601 with a time zone, e.g. 2026-01-01T00:00:00Z")
    return value


def _in_range(value: datetime) -> datetime:
    """A time that exists in UTC (0001-01-01T00:00+23:59 does not): else a 422."""
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("the time is out of range once converted to UTC") from None


IsoTime = Annotated[AwareDatetime, BeforeValidator(_iso_time), AfterValidator(_in_range)]


LinkExpiry = Annotated[
    int | None, Query(ge=0, description="Signed links: Unix time the link expires (with sig)")
]
LinkSignature = Annotated[
    str | None,
    Query(max_length=64, description="Signed links: HMAC of the path and exp; no token needed"),
]


def _errors(**codes: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error codes an operation can answer, e.g. _errors(e404=…)."""
    return {
        int(code[1:]): {"model": ErrorBody, "description": text} for code, text in codes.items()
    }


class Feedback(BaseModel):
    """An operator's verdict on an event."""

    model_config = ConfigDict(extra="forbid")

    verdict: Verdict = Field(
        description="false_alarm: this sight is normal here (it is added to the camera's "
        "normal references and will not alert again); confirmed: a real hazard."
    )
    note: str | None = Field(None, max_length=1000, description="free text, e.g. who and why")


class _BearerAuth(BaseHTTPMiddleware):
    """The token on everything but health checks; signed media links and (when configured)
    the docs pass without it."""

    def __init__(
        self,
        app: Any,
        token: str,
        signer: MediaSigner,
        docs_public: bool,
        metrics_public: bool = False,
    ) -> None:
        super().__init__(app)
        self._expected = f"Bearer {token}".encode()
        self._signer = signer
        self._docs_public = docs_public
        self._metrics_public = metrics_public
        self._failures = FailedAuth()

    def _open(self, request: Request) -> bool:
        path = request.url.path
        if path in PUBLIC_PATHS or request.method == "OPTIONS":
            return True
        if self._docs_public and (path in DOCS_PATHS or path.startswith(DOCS_STATIC + "/")):
            return True
        if self._metrics_public and path == "/metrics":
            return True
        query = request.query_params
        return MEDIA_PATH.match(path) is not None and self._signer.verify(
            path, query.get("exp"), query.get("sig")
        )

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        given = request.headers.get("authorization", "").encode()
        authorised = hmac.compare_digest(given, self._expected)  # constant time
        request.scope["hazardwatch.authorised"] = authorised
        if self._open(request):
            return await call_next(request)
        client = request.client.host if request.client else "unknown"
        wait_s = self._failures.blocked_for(client)
        if wait_s:
            return JSONResponse(
                {"detail": "too many failed authentications from this address; retry later"},
                status_code=429,
                headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
            )
        if not authorised:
            self._failures.failed(client)
            return JSONResponse(
                {"detail": "missing or wrong bearer token (Authorization: Bearer <api.token>)"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return await call_next(request)


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


class _HostCheck:
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


class _BodyLimit:
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
            await _too_large_response(self.max_bytes)(scope, receive, send)
            return
        received = 0
        started = False

        async def capped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._cap:
                    raise HTTPException(413, _too_large(self.max_bytes))
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
            await _too_large_response(self.max_bytes)(scope, receive, send)


def _too_large_response(max_bytes: int) -> JSONResponse:
    return JSONResponse({"detail": _too_large(max_bytes)}, status_code=413)


def _too_large(max_bytes: int) -> str:
    return f"upload larger than api.max_upload_mb ({max_bytes / 1e6:.1f} MB)"


def _query_names(dependant: Any) -> set[str]:
    """The query parameters a route takes, its dependencies' included."""
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _reject_unknown_query(request: Request) -> None:
    """422 for a query parameter the route does not take: a typo must not widen a filter
    (`/api/v1/events?class_name=fire` would otherwise list every event)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = _query_names(dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = ", ".join(sorted(known)) or "none"
        raise unprocessable(
            *(
                problem(
                    ["query", name],
                    f"unknown query parameter {name!r}; this endpoint takes {takes}",
                    "extra_forbidden",
                )
                for name in unknown
            )
        )


def create_app(  # noqa: PLR0915
    state: ApiState, settings: ApiSettings | None = None, metrics: bool = True
) -> FastAPI:
    """The HTTP API over `state`; `metrics`: serve /metrics (`metrics.enabled`)."""
    settings = settings or ApiSettings()
    max_bytes = int(settings.max_upload_mb * 1e6)
    scoring_slots = asyncio.Semaphore(SCORING_AT_ONCE)
    mask_threshold, mask_grid = settings.mask_threshold, settings.mask_grid
    app = FastAPI(
        title="hazardwatch",
        version=__version__,
        dependencies=[Depends(_reject_unknown_query)],
        docs_url=None,  # served below from packaged files, not a CDN
        redoc_url=None,
        description="CCTV hazard events, their snapshots and clips, camera state, and scoring "
        "of uploaded images with the live model.",
    )
    app.add_middleware(_BodyLimit, max_bytes=max_bytes)
    if settings.token is not None:
        if not state.signer.enabled:  # links the token-less world can open
            state.signer = MediaSigner(settings.token.get_secret_value(), settings.media_url_ttl_s)
        app.add_middleware(
            _BearerAuth,
            token=settings.token.get_secret_value(),
            signer=state.signer,
            docs_public=settings.docs_public,
            metrics_public=settings.metrics_public,
        )
    hosts = settings.hosts()
    if hosts is not None:
        app.add_middleware(_HostCheck, hosts=hosts)  # added last: runs first
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )

    _offline_docs(app)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI answers 400 for a body it cannot parse (not JSON, not UTF-8): a 422 in
        # the documented validation shape says the same and is what the document promises.
        if exc.status_code == 400:
            invalid = problem(["body"], str(exc.detail), "body_invalid")
            return JSONResponse({"detail": [invalid]}, status_code=422)
        return await http_exception_handler(request, exc)

    auth: dict[int | str, dict[str, Any]] = (
        _errors(e401="Missing or wrong bearer token") if settings.token is not None else {}
    )

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers, and which role it plays (run: one process;
        events: the distributed events service), as the other roles say theirs."""
        return {"status": "ok", "role": "events" if state.scoring_elsewhere else "run"}

    @app.get(
        "/readyz",
        tags=["health"],
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Not ready; the reasons say why"}},
    )
    def readyz(request: Request) -> JSONResponse:
        """Readiness: database reachable, model loaded, cameras delivering; 503 with reasons.
        With a token set, a caller without it learns only ready or not and how many
        reasons (no camera names)."""
        reasons = _readiness(state)
        if settings.token is not None and not request.scope.get("hazardwatch.authorised"):
            reasons = (
                [f"{len(reasons)} reason(s); send the API token to see them"] if reasons else []
            )
        body = {"status": "degraded" if reasons else "ready", "reasons": reasons}
        if reasons:
            return JSONResponse(body, status_code=503, headers={"Retry-After": RETRY_AFTER_S})
        return JSONResponse(body)

    if metrics:

        @app.get("/metrics", tags=["health"], response_class=Response)
        def metrics_endpoint() -> Response:
            """Prometheus metrics."""
            return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/api/v1/events", tags=["events"], responses=auth)
    def list_events(
        camera: str | None = None,
        class_name: Annotated[str | None, Query(alias="class")] = None,
        status: EventStatus | None = None,
        since: IsoTime | None = None,
        until: IsoTime | None = None,
        min_score: Annotated[float | None, Query(ge=0, le=1)] = None,
        verdict: Verdict | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> dict[str, Any]:
        """Events newest first; `since`/`until` bound the start time (ISO 8601 with zone)."""
        rows = state.repository.list_events(
            camera=camera,
            class_name=class_name,
            status=status,
            since=since,
            until=until,
            min_score=min_score,
            verdict=verdict,
            limit=limit,
            offset=offset,
        )
        return {
            "items": [_event(e, state) for e in rows],
            "limit": limit,
            "offset": offset,
            "next_offset": offset + limit if len(rows) == limit else None,
        }

    @app.get(
        "/api/v1/events/{uuid}",
        tags=["events"],
        responses={**auth, **_errors(e404="No such event")},
    )
    def get_event(uuid: str) -> dict[str, Any]:
        return _event(_find(state, uuid), state)

    @app.post(
        "/api/v1/events/{uuid}/feedback",
        tags=["events"],
        responses={
            **auth,
            **_errors(e404="No such event", e503="Verdict stored; the detector is not running"),
        },
    )
    def feedback(uuid: str, body: Feedback) -> dict[str, Any]:
        """Record a verdict. A false alarm teaches the camera that its peak frame is normal."""
        event = _find(state, uuid)
        updated = state.repository.set_verdict(event.uuid, body.verdict, body.note)
        if updated is None:
            raise HTTPException(404, f"no event {uuid!r}")
        references = None
        if body.verdict == "false_alarm" and updated.peak_embedding is not None:
            if state.learn_normal is None:
                raise HTTPException(
                    503,
                    "verdict stored, but the detector is not running to learn the sight; "
                    "post it again once the service runs",
                    headers={"Retry-After": RETRY_AFTER_S},
                )
            try:
                embedding = decode_embedding(updated.peak_embedding)
            except ConfigError:
                embedding = None
            if embedding is not None:
                references = state.learn_normal(updated.camera, embedding)
        return {"event": _event(updated, state), "normal_references": references}

    @app.get(
        "/api/v1/events/{uuid}/snapshot.jpg",
        tags=["events"],
        response_class=FileResponse,
        responses={
            **auth,
            200: {"content": {"image/jpeg": {}}, "description": "The peak frame"},
            **_errors(e404="No such event, or it has no snapshot (any more)"),
        },
    )
    def snapshot(uuid: str, exp: LinkExpiry = None, sig: LinkSignature = None) -> FileResponse:
        event = _find(state, uuid)
        return FileResponse(_media(state, event.snapshot_path, "snapshot"), media_type="image/jpeg")

    @app.get(
        "/api/v1/events/{uuid}/clip.mp4",
        tags=["events"],
        response_class=FileResponse,
        responses={
            **auth,
            200: {"content": {"video/mp4": {}}, "description": "The event's clip"},
            202: {
                "model": ErrorBody,
                "description": "The clip is still being cut (the event is open, or just "
                "ended): ask again after the Retry-After seconds",
                "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            },
            **_errors(e404="No such event, or it has no clip (any more)"),
        },
    )
    def clip(uuid: str, exp: LinkExpiry = None, sig: LinkSignature = None) -> Response:
        event = _find(state, uuid)
        if not event.clip_path:
            wait_s = state.clip_pending(event.uuid)
            if wait_s is not None:
                retry = str(max(1, math.ceil(wait_s)))
                return JSONResponse(
                    {"detail": f"the clip of event {event.uuid} is being cut; retry in {retry} s"},
                    status_code=202,
                    headers={"Retry-After": retry},
                )
        return FileResponse(_media(state, event.clip_path, "clip"), media_type="video/mp4")

    @app.get("/api/v1/cameras", tags=["cameras"], responses=auth)
    def cameras() -> dict[str, Any]:
        invalid = [
            {"name": name, "kind": None, "state": "invalid", "last_error": redact_text(error)}
            for name, error in state.cameras.invalid.items()
        ]
        if state.status is not None:  # the events role: what the capture nodes report
            items = state.status.cameras() + invalid
        else:
            items = [r.status() for r in state.cameras.readers] + invalid
        if state.calibration is not None:
            items = [
                {**item, "calibration": state.calibration(str(item["name"]))} for item in items
            ]
        return {"items": items}

    @app.get(
        "/api/v1/cameras/{name}/normal",
        tags=["cameras"],
        responses={**auth, **_errors(e404="No such camera is known to the detector")},
    )
    def camera_normal(name: str) -> dict[str, Any]:
        """How each class of the camera is decided: the rule (evidence: thresholds from
        the camera's calibrated noise for `detector.false_alarms_per_day`; offset: a camera
        never calibrated), its normal band, noise and threshold, and where its statistic
        stands now (`now.signal`: the fraction of the way to an event)."""
        found = state.explain(name) if state.explain is not None else None
        if found is None:
            raise HTTPException(
                404, f"camera {name!r} has sent no frame to this detector and has no state"
            )
        return {"camera": name, **found}

    @app.post(
        "/api/v1/score",
        tags=["scoring"],
        response_model=None,
        responses={
            **auth,
            200: {
                "content": {"application/json": {}, "image/png": {}},
                "description": "Scores as JSON, or with overlay=1 a PNG heatmap, or with "
                "mask=1 a PNG mask (header X-Hazardwatch-Mask-Classes: value=class,…)",
            },
            **_errors(
                e404="mask_class names a class the prompt bank does not have",
                e413="The upload or the image's pixel count is over the limit",
                e415="Not an image this service can decode",
                e503="The model is still loading",
            ),
        },
    )
    async def score(
        file: Annotated[UploadFile, File(json_schema_extra={"minLength": 1})],
        overlay: Annotated[bool, Query()] = False,
        top: Annotated[int, Query(ge=1, le=1000)] = 5,
        mask: Annotated[bool, Query()] = False,
        mask_class: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        threshold: Annotated[float | None, Query(ge=0, le=1)] = None,
    ) -> Response | dict[str, Any]:
        """Score an image (multipart field `file`) with the live model and prompt bank.

        Returns class probabilities and the top prompts, or with `overlay=1` a PNG of the
        image with a coarse hazard heatmap from scoring a grid of crops, or with `mask=1` a
        PNG mask from the same crops: an indexed PNG over the hazard classes (value i for
        the i-th, 0 for none; the header `X-Hazardwatch-Mask-Classes` names them), or with
        `mask_class=NAME` a 0/255 mask of that one class (404 for a class the bank does not
        have). A pixel gets the class whose interpolated crop probability is highest there,
        when it reaches `threshold` (default `api.mask_threshold`). A mask asked for wins
        over `overlay=1`.
        """
        mask = mask or mask_class is not None  # a class's mask needs no mask=1 besides
        worker = state.worker
        if worker is None:
            raise HTTPException(
                503,
                "this is the events service: images are scored on the worker nodes"
                if state.scoring_elsewhere
                else "the model is still loading; retry in a moment",
                headers={"Retry-After": RETRY_AFTER_S},
            )
        if mask_class is not None and mask_class not in worker.index.bank.class_names:
            known = ", ".join(worker.index.bank.class_names)
            raise HTTPException(404, f"no class {mask_class!r} in the prompt bank; it has {known}")
        data = await file.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise HTTPException(413, _too_large(max_bytes))
        # Decoding and inference are CPU-bound: off the event loop, so /healthz and every
        # other request go on answering while uploads are scored; at most SCORING_AT_ONCE
        # at a time, so 32 uploads at once cost two decodes' memory, not 32.
        async with scoring_slots:
            return await _score_upload(data, overlay, top, mask, mask_class, threshold)

    async def _score_upload(
        data: bytes,
        overlay: bool,
        top: int,
        mask: bool,
        mask_class: str | None,
        threshold: float | None,
    ) -> Response | dict[str, Any]:
        worker = state.worker
        assert worker is not None
        image = await run_in_threadpool(decode_upload, data)  # 415 / 413 with the reason
        try:
            if overlay and not mask:
                png = await run_in_threadpool(hazard_overlay, worker, image, mask_grid)
                return Response(png, media_type="image/png")
            if mask:
                cut = mask_threshold if threshold is None else threshold
                png, legend = await run_in_threadpool(
                    hazard_mask, worker, image, mask_class, cut, mask_grid
                )
                names = ",".join(f"{value}={name}" for value, name in legend.items())
                return Response(
                    png, media_type="image/png", headers={"X-Hazardwatch-Mask-Classes": names}
                )
            bank, probs, sims = await run_in_threadpool(worker.score_images, [image])
        except ValueError as exc:  # e.g. too small for the model's preprocessing
            why = f"the image cannot be scored: {exc}"
            raise unprocessable(problem(["body", "file"], why)) from None
        k = max(1, min(top, len(bank.prompts)))
        order = sims[0].argsort()[::-1][:k]
        classes = dict(zip(bank.class_names, map(float, probs[0]), strict=True))
        hazards = {n: p for n, p in classes.items() if n in bank.hazard_classes}
        top_hazard = max(hazards, key=lambda n: hazards[n]) if hazards else None
        return {
            "classes": classes,
            "top_hazard": top_hazard,
            "top_prompts": [
                {"prompt": bank.prompts[i], "similarity": float(sims[0][i])} for i in order
            ],
            "model": worker.encoder.name,
            "prompt_bank_version": bank.version,
            "image": {"width": int(image.shape[1]), "height": int(image.shape[0])},
        }

    return app


def _offline_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc with their scripts, styles and icon from the installed
    fastapi-offline package: CCTV networks are often cut off from the internet."""
    static = Path(str(resources.files("fastapi_offline") / "static"))
    app.mount(DOCS_STATIC, StaticFiles(directory=static), name="docs-static")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_STATIC}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            redoc_js_url=f"{DOCS_STATIC}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_STATIC}/favicon.png",
            with_google_fonts=False,
        )


def _readiness(state: ApiState) -> list[str]:
    reasons = []
    try:
        state.repository.ping()
    except sa.exc.SQLAlchemyError as exc:
        reasons.append(f"database unreachable: {type(exc).__name__}")
    writer = state.writer
    if writer is not None and writer.spooled:
        reasons.append(f"{writer.spooled} write(s) spooled, waiting for the database")
    if state.scoring_elsewhere:  # cameras and the model live on the capture and worker nodes
        return reasons + (_remote_readiness(state.status) if state.status is not None else [])
    if state.worker is None:
        reasons.append("model not loaded yet")
    elif not state.worker.is_alive():
        reasons.append("scoring worker is not running")
    cameras = state.cameras
    reasons += camera_problems(r.status() for r in cameras.readers)
    for name in cameras.invalid:
        reasons.append(f"camera {name}: invalid source, not running (see /api/v1/cameras)")
    if state.worker is not None and not cameras.readers and not cameras.invalid:
        reasons.append("no camera configured: add cameras: to the configuration and restart")
    return reasons


def _remote_readiness(board: StatusBoard) -> list[str]:
    if not board.current:
        return ["the roles' status cannot be read from NATS"]
    reasons = []
    if not board.workers():
        reasons.append(f"no scoring worker has reported in the last {STATUS_TTL_S:g} s")
    cameras = board.cameras()
    if not cameras:
        reasons.append(f"no capture node has reported a camera in the last {STATUS_TTL_S:g} s")
    return reasons + camera_problems(cameras)


def _find(state: ApiState, uuid: str) -> EventRecord:
    if not UUID_RE.match(uuid):
        raise HTTPException(404, f"no event {uuid[:64]!r}")
    event = state.repository.get_event(uuid)
    if event is None:
        raise HTTPException(404, f"no event {uuid!r}")
    return event


def _media(state: ApiState, relative: str | None, what: str) -> Path:
    if not relative:
        raise HTTPException(404, f"this event has no {what}")
    root = state.media_dir.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        # Outside the media dir is answered like a missing file: nothing to learn from it.
        raise HTTPException(404, f"{what} file is gone (removed by media retention?)")
    return path


def _event(event: EventRecord, state: ApiState) -> dict[str, Any]:
    data = event_json(event)
    base = f"/api/v1/events/{event.uuid}"
    data["snapshot_url"] = (
        state.signer.link(f"{base}/snapshot.jpg") if event.snapshot_path else None
    )
    data["clip_url"] = state.signer.link(f"{base}/clip.mp4") if event.clip_path else None
    return data
