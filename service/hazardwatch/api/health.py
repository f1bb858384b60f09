"""Health: liveness, readiness with its reasons, and the Prometheus metrics."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from hazardwatch.api.schemas import Readiness
from hazardwatch.api.state import RETRY_AFTER_S, ApiState
from hazardwatch.handoff.status import STATUS_TTL_S
from hazardwatch.metrics import CONTENT_TYPE
from hazardwatch.settings import ApiSettings
from hazardwatch.status import RoleStatus, camera_problems


def router(state: ApiState, settings: ApiSettings, metrics: bool) -> APIRouter:
    """`metrics`: serve /metrics (`metrics.enabled`)."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    def healthz() -> dict[str, str]:
        """Liveness: the process answers, and which role it plays (run: one process;
        events: the distributed events service), as the other roles say theirs."""
        return {"status": "ok", "role": "events" if state.scoring_elsewhere else "run"}

    @router.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Not ready; the reasons say why"}},
    )
    def readyz(request: Request) -> JSONResponse:
        """Readiness: database reachable, model loaded, cameras delivering; 503 with reasons.
        With a token set, a caller without it learns only ready or not and how many
        reasons (no camera names)."""
        reasons = _readiness(state)
        if settings.authenticated and not request.scope.get("hazardwatch.authorised"):
            reasons = (
                [f"{len(reasons)} reason(s); send the API token to see them"] if reasons else []
            )
        body = {"status": "degraded" if reasons else "ready", "reasons": reasons}
        if reasons:
            return JSONResponse(body, status_code=503, headers={"Retry-After": RETRY_AFTER_S})
        return JSONResponse(body)

    if metrics:

        @router.get("/metrics", response_class=Response)
        def metrics_endpoint() -> Response:
            """Prometheus metrics."""
            return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    return router


def _readiness(state: ApiState) -> list[str]:
    reasons = []
    try:
        state.repository.ping()
    except sa.exc.SQLAlchemyError as exc:
        reasons.append(f"database unreachable: {type(exc).__name__}")
    writer = state.writer
    if writer is not None and writer.spooled:
        reasons.append(f"{writer.spooled} write(s) spooled, waiting for the database")
    if state.roles is not None:  # cameras and the model live on the capture and worker nodes
        return reasons + _roles_readiness(state.roles)
    if state.worker is None:
        reasons.append("model not loaded yet")
    elif not state.worker.is_alive():
        reasons.append("scoring worker is not running")
    cameras = state.status.cameras()
    if state.worker is not None and not cameras:
        reasons.append("no camera configured: add cameras: to the configuration and restart")
    return reasons + camera_problems(cameras)


def _roles_readiness(roles: RoleStatus) -> list[str]:
    if not roles.current:
        return ["the roles' status cannot be read from NATS"]
    reasons = []
    if not roles.workers():
        reasons.append(f"no scoring worker has reported in the last {STATUS_TTL_S:g} s")
    cameras = roles.cameras()
    if not cameras:
        reasons.append(f"no capture node has reported a camera in the last {STATUS_TTL_S:g} s")
    return reasons + camera_problems(cameras)
