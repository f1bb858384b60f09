"""Cameras: each camera's state (local readers, or what the capture nodes report) with
its calibration, and how each of its classes is decided now."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from hazardwatch.api.schemas import Responses, errors
from hazardwatch.api.state import ApiState
from hazardwatch.redact import redact_text


def router(state: ApiState, auth: Responses) -> APIRouter:
    router = APIRouter(prefix="/api/v1/cameras", tags=["cameras"], responses=auth)

    @router.get("")
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
