"""Cameras: each camera's state (local readers, or what the capture nodes report) with
its calibration, and how each of its classes is decided now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Response

from hazardwatch.api.accounts import Principal
from hazardwatch.api.schemas import Responses, errors
from hazardwatch.api.security import requires
from hazardwatch.api.state import ApiState

UNREVIEWED_WINDOW = timedelta(days=7)  # what a camera's unreviewed count covers


def router(state: ApiState, auth: Responses) -> APIRouter:
    router = APIRouter(prefix="/api/v1/cameras", tags=["cameras"], responses=auth)

    @router.get("")
    def cameras(by: Annotated[Principal, Depends(requires("viewer"))]) -> dict[str, Any]:
        """Every camera: running, ended, or with a source that does not parse (invalid);
        in the events role, as its capture node last reported it, with its `owner` (its
        partition and the events instance holding it; null: none now). `unreviewed`: its
        events of the last 7 days the caller has not opened yet; `open_events`: its events
        open now."""
        since = datetime.now(UTC) - UNREVIEWED_WINDOW
        unreviewed = state.repository.unreviewed_by_camera(by.name, since)
        open_now = state.repository.open_by_camera()
        items = [
            {
                **status.to_json(),
                "unreviewed": unreviewed.get(status.name, 0),
                "open_events": open_now.get(status.name, 0),
            }
            for status in state.status.cameras()
        ]
        if state.calibration is not None:
            items = [{**item, "calibration": state.calibration(item["name"])} for item in items]
        if state.owner_of is not None:  # the events role: which instance decides its events
            items = [{**item, "owner": state.owner_of(item["name"])} for item in items]
        return {"items": items}

    @router.get(
        "/{name}/latest.jpg",
        response_class=Response,
        responses={
            200: {"content": {"image/jpeg": {}}, "description": "The camera's latest frame"},
            **errors(e404="No such camera, or no frame from it yet (or for a minute)"),
        },
    )
    def latest(name: str) -> Response:
        """The camera's latest frame, at most 480 px wide: where its reader runs in this
        process, the copy it keeps every 2 s; in the events role, what its capture node
        put in the last minute (every 10 s)."""
        data = state.latest_frame(name)
        if data is None:
            raise HTTPException(404, f"no frame of camera {name[:64]!r} to show (yet)")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @router.get(
        "/{name}/normal",
        responses=errors(e404="No such camera is known to the detector"),
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

    return router
