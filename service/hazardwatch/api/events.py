"""Events: the list with its filters, one event, an operator's verdict, and the event's
snapshot and clip (by token or by a signed link)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import FileResponse, JSONResponse, Response

from hazardwatch.api.accounts import Principal
from hazardwatch.api.schemas import (
    ErrorBody,
    Feedback,
    IsoTime,
    LinkExpiry,
    LinkSignature,
    Responses,
    errors,
)
from hazardwatch.api.security import requires
from hazardwatch.api.state import RETRY_AFTER_S, ApiState
from hazardwatch.detect.normal import decode_embedding
from hazardwatch.errors import ConfigError
from hazardwatch.outputs.alerts import event_json
from hazardwatch.records import EventRecord, EventStatus, Verdict
from hazardwatch.storage.repository import MAX_PAGE

UUID_RE = re.compile(r"^[0-9a-fA-F-]{8,64}$")


def router(state: ApiState, auth: Responses) -> APIRouter:
    router = APIRouter(prefix="/api/v1/events", tags=["events"], responses=auth)

    @router.get("")
    def list_events(
        camera: str | None = None,
        class_name: Annotated[str | None, Query(alias="class")] = None,
        status: EventStatus | None = None,
        since: IsoTime | None = None,
        until: IsoTime | None = None,
        min_score: Annotated[float | None, Query(ge=0, le=1)] = None,
        verdict: Verdict | None = None,
        reviewed: Annotated[
            bool | None, Query(description="Only those the caller has (not) opened")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
        *,
        by: Annotated[Principal, Depends(requires("viewer"))],
    ) -> dict[str, Any]:
        """Events newest first; `since`/`until` bound the start time (ISO 8601 with zone).
        Each says whether the caller has `reviewed` (opened) it."""
        rows = state.repository.list_events(
            camera=camera,
            class_name=class_name,
            status=status,
            since=since,
            until=until,
            min_score=min_score,
            verdict=verdict,
            reviewed_by=by.name,
            reviewed=reviewed,
            limit=limit,
            offset=offset,
        )
        seen = state.repository.reviewed_among([e.uuid for e in rows], by.name)
        return {
            "items": [{**_event(e, state), "reviewed": e.uuid in seen} for e in rows],
            "limit": limit,
            "offset": offset,
            "next_offset": offset + limit if len(rows) == limit else None,
        }

    @router.get(
        "/{uuid}",
        responses=errors(e404="No such event"),
    )
    def get_event(uuid: str) -> dict[str, Any]:
        return _event(_find(state, uuid), state)

    @router.post("/{uuid}/review", responses=errors(e404="No such event"))
    def review(uuid: str, by: Annotated[Principal, Depends(requires("viewer"))]) -> dict[str, Any]:
        """The caller has opened the event (the review page says so): reviewed, for the
        caller, from now on."""
        if not UUID_RE.match(uuid) or not state.repository.mark_reviewed(uuid, by.name):
            raise HTTPException(404, f"no event {uuid[:64]!r}")
        return {"uuid": uuid, "reviewed": True, "by": by.name}

    @router.post(
        "/{uuid}/feedback",
        responses=errors(
            e403="The caller is a viewer (verdicts need the operator role), or a session's "
            "POST came without its X-CSRF-Token",
            e404="No such event",
            e503="Verdict stored; the detector is not running",
        ),
    )
    def feedback(
        uuid: str, body: Feedback, by: Annotated[Principal, Depends(requires("operator"))]
    ) -> dict[str, Any]:
        """Record a verdict, and who gave it. A false alarm teaches the camera that its
        peak frame is normal."""
        event = _find(state, uuid)
        updated = state.repository.set_verdict(event.uuid, body.verdict, body.note, by.name)
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

    @router.get(
        "/{uuid}/snapshot.jpg",
        response_class=FileResponse,
        responses={
            200: {"content": {"image/jpeg": {}}, "description": "The peak frame"},
            **errors(e404="No such event, or it has no snapshot (any more)"),
        },
    )
    def snapshot(uuid: str, exp: LinkExpiry = None, sig: LinkSignature = None) -> FileResponse:
        event = _find(state, uuid)
        return FileResponse(_media(state, event.snapshot_path, "snapshot"), media_type="image/jpeg")

    @router.get(
        "/{uuid}/clip.mp4",
        response_class=FileResponse,
        responses={
            200: {"content": {"video/mp4": {}}, "description": "The event's clip"},
            202: {
                "model": ErrorBody,
                "description": "The clip is still being cut (the event is open, or just "
                "ended): ask again after the Retry-After seconds",
                "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            },
            **errors(e404="No such event, or it has no clip (any more)"),
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

    return router


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
