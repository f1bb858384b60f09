"""The HTTP API: `create_app` puts the middleware and one router per area over an
`ApiState` that the service fills in as it starts.

Middleware, outermost first: allowed hosts, the bearer token (everything but the health
checks; signed media links and, when configured, the docs and metrics pass without it),
the body cap. Routers: health, events (with their media), cameras, scoring, the docs.
Media paths are resolved inside the media directory and can never escape it.
"""

from __future__ import annotations

import secrets

from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from hazardwatch import __version__
from hazardwatch.api import cameras, classes, events, health, scoring, search, session
from hazardwatch.api.accounts import Account, Accounts, Sessions
from hazardwatch.api.docs import offline_docs
from hazardwatch.api.errors import problem
from hazardwatch.api.page import serve_page
from hazardwatch.api.schemas import Responses, errors, reject_unknown_query
from hazardwatch.api.security import Authentication, BodyLimit, FailedAuth, HostCheck
from hazardwatch.api.state import ApiState
from hazardwatch.outputs.media_links import MediaSigner
from hazardwatch.settings import ApiSettings

__all__ = ["ApiState", "create_app"]


def create_app(
    state: ApiState, settings: ApiSettings | None = None, metrics: bool = True
) -> FastAPI:
    """The HTTP API over `state`; `metrics`: serve /metrics (`metrics.enabled`)."""
    settings = settings or ApiSettings()
    app = FastAPI(
        title="hazardwatch",
        version=__version__,
        dependencies=[Depends(reject_unknown_query)],
        docs_url=None,  # served from packaged files, not a CDN (api/docs.py)
        redoc_url=None,
        description="CCTV hazard events, their snapshots and clips, camera state, and scoring "
        "of uploaded images with the live model.",
    )
    accounts = accounts_from(settings)
    sessions = Sessions(settings.session_ttl_s)
    _middleware(app, state, settings, accounts, sessions)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    auth: Responses = errors(e401="Missing or wrong credentials") if settings.authenticated else {}
    offline_docs(app)
    serve_page(app)
    app.include_router(health.router(state, settings, metrics))
    secure = (settings.public_url or "").startswith("https://")
    app.include_router(session.router(accounts, sessions, FailedAuth(), secure))
    app.include_router(events.router(state, auth))
    app.include_router(cameras.router(state, auth))
    app.include_router(scoring.router(state, settings, auth))
    app.include_router(search.router(state, settings, auth))
    app.include_router(classes.router(state, settings, auth))
    return app


def accounts_from(settings: ApiSettings) -> Accounts:
    """The configured users and the single api.token (an admin)."""
    users = [
        Account(
            u.name,
            u.role,
            u.password_hash.get_secret_value() if u.password_hash is not None else None,
            u.token.get_secret_value() if u.token is not None else None,
        )
        for u in settings.users
    ]
    token = settings.token.get_secret_value() if settings.token is not None else None
    return Accounts(users, token)


def _middleware(
    app: FastAPI, state: ApiState, settings: ApiSettings, accounts: Accounts, sessions: Sessions
) -> None:
    """Added innermost first: each `add_middleware` wraps what is there."""
    app.add_middleware(BodyLimit, max_bytes=int(settings.max_upload_mb * 1e6))
    if accounts.required and not state.signer.enabled:  # links the token-less world opens
        state.signer = MediaSigner(_link_key(settings), settings.media_url_ttl_s)
    app.add_middleware(
        Authentication,
        accounts=accounts,
        sessions=sessions,
        signer=state.signer,
        docs_public=settings.docs_public,
        metrics_public=settings.metrics_public,
    )
    hosts = settings.hosts()
    if hosts is not None:
        app.add_middleware(HostCheck, hosts=hosts)  # added last: runs first
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )


def _link_key(settings: ApiSettings) -> str:
    """What signs media links when the caller gave the state no signer (the service gives
    it `components.media_signer`'s): the api.token, or a key of this process."""
    if settings.token is not None:
        return settings.token.get_secret_value()
    return secrets.token_hex(32)


async def _http_error(request: Request, exc: Exception) -> Response:
    # FastAPI answers 400 for a body it cannot parse (not JSON, not UTF-8): a 422 in the
    # documented validation shape says the same and is what the document promises.
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        invalid = problem(["body"], str(exc.detail), "body_invalid")
        return JSONResponse({"detail": [invalid]}, status_code=422)
    if exc.status_code == 405:  # Starlette names only the first route of the path's methods
        allowed = sorted(
            method
            for route in request.app.router.routes
            if isinstance(route, APIRoute) and route.matches(request.scope)[0] != Match.NONE
            for method in route.methods or ()
        )
        exc = StarletteHTTPException(405, exc.detail, headers={"Allow": ", ".join(allowed)})
    return await http_exception_handler(request, exc)
