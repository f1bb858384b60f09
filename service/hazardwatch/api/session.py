"""The review page's login: POST a name and password for a session cookie (HttpOnly,
SameSite=Strict) and a CSRF token; GET says who the caller is; DELETE logs out. Wrong
passwords are rate-limited per client address."""

from __future__ import annotations

import hmac
import math
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from hazardwatch.api.accounts import (
    CSRF_HEADER,
    SESSION_COOKIE,
    Accounts,
    Principal,
    Session,
    Sessions,
)
from hazardwatch.api.schemas import ErrorBody, Responses, errors
from hazardwatch.api.security import FailedAuth, caller
from hazardwatch.records import Role


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class Caller(BaseModel):
    name: str | None = Field(
        description="The user; api-token for api.token, anonymous when the API is open; "
        "null: nobody is logged in"
    )
    role: Role | None
    csrf_token: str | None = Field(
        description=f"With a session: send it as {CSRF_HEADER} on every POST and DELETE"
    )


def router(
    accounts: Accounts, sessions: Sessions, failures: FailedAuth, secure_cookie: bool
) -> APIRouter:
    router = APIRouter(prefix="/api/v1/session", tags=["session"])
    too_many: Responses = {
        429: {"model": ErrorBody, "description": "Too many wrong passwords from this address"}
    }

    @router.post(
        "",
        response_model=Caller,
        responses={**errors(e401="Wrong name or password"), **too_many},
    )
    def login(body: Login, request: Request) -> JSONResponse:
        """Log in: a session cookie for the review page, and its CSRF token."""
        client = request.client.host if request.client else "unknown"
        wait_s = failures.blocked_for(client)
        if wait_s:
            raise HTTPException(
                429,
                "too many wrong passwords from this address; retry later",
                headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
            )
        principal = accounts.login(body.name, body.password)
        if principal is None:
            failures.failed(client)
            raise HTTPException(401, "wrong name or password")
        sid, session = sessions.start(principal)
        answer = JSONResponse(_caller(principal, session))
        answer.set_cookie(
            SESSION_COOKIE,
            sid,
            max_age=int(sessions.ttl_s),
            path="/",
            httponly=True,
            samesite="strict",
            secure=secure_cookie or request.url.scheme == "https",
        )
        return answer

    @router.get("", response_model=Caller)
    def whoami(request: Request) -> dict[str, Any]:
        """Who the caller is: a session's user (with its CSRF token), a token's, anonymous
        when the API is open, or nobody (all null: the page shows its login form)."""
        principal = caller(request)
        if principal is None:
            return {"name": None, "role": None, "csrf_token": None}
        return _caller(principal, _session(request))

    @router.delete(
        "",
        status_code=204,
        response_class=Response,
        responses=errors(e403=f"A session's logout without its {CSRF_HEADER}"),
    )
    def logout(request: Request) -> Response:
        """End this browser's session (its cookie is cleared)."""
        session = _session(request)
        sid = request.cookies.get(SESSION_COOKIE)
        if session is not None and sid:
            given = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(given.encode(), session.csrf.encode()):
                raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header")
            sessions.end(sid)
        answer = Response(status_code=204)
        answer.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return answer

    return router


def _session(request: Request) -> Session | None:
    found = request.scope.get("hazardwatch.session")
    return found if isinstance(found, Session) else None


def _caller(principal: Principal, session: Session | None) -> dict[str, Any]:
    return {
        "name": principal.name,
        "role": principal.role,
        "csrf_token": session.csrf if session is not None else None,
    }
