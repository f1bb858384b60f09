"""Events: the list with its filters, one event, an operator's verdict, and the event's
snapshot and clip (by token or by a signed link)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import FileResponse, JSONResponse, Response

from hazardwatch.api.accounts import Principal
from hazardwatch.api.classes import add_example
from hazardwatch.api.errors import problem, unprocessable
from hazardwatch.api.examples import event_example
from hazardwatch.api.schemas import (
    UUID_PATTERN,
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
from hazardwatch.errors import ConfigError, DetectorUnavailableError
from hazardwatch.outputs.alerts import event_json, iso
from hazardwatch.records import EventRecord, EventStatus, ScoreSample, Verdict
from hazardwatch.storage.repository import MAX_PAGE

UUID_RE = re.compile(UUID_PATTERN)
MAX_AROUND_S = 600.0  # the score series reaches at most this far either side of an event
MAX_EVENT_S = 3600.0  # and covers at most this much of a long event


def router(state: ApiState, auth: Responses) -> APIRouter:
    router = APIRouter(prefix="/api/v1/events", tags=["events"], responses=auth)

    @router.get("", responses=errors(e404="The event to page from is not stored (any more)"))
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
        before: Annotated[
            str | None,
            Query(pattern=UUID_PATTERN, description="Keyset page: the events listed after it"),
        ] = None,
        after: Annotated[
            str | None,
            Query(pattern=UUID_PATTERN, description="Keyset page: the events listed before it"),
        ] = None,
        *,
        by: Annotated[Principal, Depends(requires("viewer"))],
    ) -> dict[str, Any]:
        """Events newest first; `since`/`until` bound the start time (ISO 8601 with zone).
        Each says whether the caller has `reviewed` (opened) it.

        Pages: `before=<next_before>` gives the next (older) page and `after=<next_after>`
        the previous (newer) one, equally fast at any depth; each is null where there is
        nothing that way (both: the events between the two). `offset` still works and
        costs its depth. Keep the filters."""
        filters: dict[str, Any] = {
            "camera": camera,
            "class_name": class_name,
            "status": status,
            "since": since,
            "until": until,
            "min_score": min_score,
            "verdict": verdict,
            "reviewed_by": by.name,
            "reviewed": reviewed,
        }
        return _page(state, filters, limit, offset, before, after)

    @router.get(
        "/{uuid}",
        responses=errors(e404="No such event"),
    )
    def get_event(uuid: str) -> dict[str, Any]:
        return event_links(_find(state, uuid), state)

    @router.get("/{uuid}/scores", responses=errors(e404="No such event"))
    def scores(
        uuid: str,
        before_s: Annotated[float, Query(ge=0, le=MAX_AROUND_S)] = 60.0,
        after_s: Annotated[float, Query(ge=0, le=MAX_AROUND_S)] = 30.0,
        points: Annotated[int, Query(ge=10, le=2000)] = 400,
    ) -> dict[str, Any]:
        """The event's class on its camera from `before_s` before its start to `after_s`
        after its end (or now): the score and `progress` (the decision's way to its
        threshold, 1 opens an event), at most `points` points (each the highest of its
        stretch, so no peak is lost). Empty where `storage.write_scores` is off."""
        event = _find(state, uuid)
        end = event.ended_at or datetime.now(UTC)
        since = event.started_at - timedelta(seconds=before_s)
        until = min(end, event.started_at + timedelta(seconds=MAX_EVENT_S)) + timedelta(
            seconds=after_s
        )
        samples = state.repository.list_scores(event.camera, since, until, event.class_name)
        return {
            "camera": event.camera,
            "class_name": event.class_name,
            "since": iso(since),
            "until": iso(until),
            **score_series(samples, points),
        }

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
            e404="No such event (or, with add_example, no stored embedding of its peak)",
            e409="add_example: the event's class is described in words, is no longer in the "
            "bank, or holds another model's examples",
            e503="Verdict stored; the detector is not running (or, with add_example, this "
            "service does not serve the prompt bank)",
        ),
    )
    def feedback(
        uuid: str, body: Feedback, by: Annotated[Principal, Depends(requires("operator"))]
    ) -> dict[str, Any]:
        """Record a verdict, and who gave it. A false alarm teaches the camera that its
        peak frame is normal."""
        event = _find(state, uuid)
        if body.add_example:
            _can_add_example(state, event, body)
        updated = state.repository.set_verdict(event.uuid, body.verdict, body.note, by.name)
        if updated is None:
            raise HTTPException(404, f"no event {uuid!r}")
        answer: dict[str, Any] = {}
        if body.add_example:
            answer["example"] = _add_example(state, updated, body, by)
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
                try:
                    references = state.learn_normal(updated.camera, embedding)
                except DetectorUnavailableError as exc:
                    raise HTTPException(
                        503,
                        f"verdict stored, but the sight is not learned yet: {exc}; post it "
                        "again shortly",
                        headers={"Retry-After": RETRY_AFTER_S},
                    ) from None
        return {"event": event_links(updated, state), "normal_references": references, **answer}

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
        path = media_file(state, event.snapshot_path, "snapshot")
        return FileResponse(path, media_type="image/jpeg")

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
        return FileResponse(media_file(state, event.clip_path, "clip"), media_type="video/mp4")

    return router


def _page(
    state: ApiState,
    filters: dict[str, Any],
    limit: int,
    offset: int,
    before: str | None,
    after: str | None,
) -> dict[str, Any]:
    """One page of the list, and whether there is one either side."""
    try:
        rows = state.repository.list_events(
            **filters, limit=limit, offset=offset, before=before, after=after
        )
        # Whether there is a page either side: one indexed row each, so a page that
        # ends exactly at the last event offers no empty "older" page.
        older = bool(rows) and bool(
            state.repository.list_events(**filters, limit=1, before=rows[-1].uuid)
        )
        newer = bool(rows) and bool(
            state.repository.list_events(**filters, limit=1, after=rows[0].uuid)
        )
    except KeyError as missing:
        raise HTTPException(
            404, f"no event {missing.args[0]!r} to page from (removed?): start from the top"
        ) from None
    seen = state.repository.reviewed_among([e.uuid for e in rows], filters["reviewed_by"])
    keyset = before is not None or after is not None
    return {
        "items": [{**event_links(e, state), "reviewed": e.uuid in seen} for e in rows],
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if len(rows) == limit and not keyset else None,
        "next_before": rows[-1].uuid if older else None,
        "next_after": rows[0].uuid if newer else None,
    }


def _can_add_example(state: ApiState, event: EventRecord, body: Feedback) -> None:
    """Before the verdict is stored: can its peak become an example of its class?"""
    if body.verdict != "confirmed":
        raise unprocessable(problem(["body", "add_example"], "only a confirmed event adds"))
    if event.peak_embedding is None:
        raise HTTPException(404, f"event {event.uuid} has no stored embedding of its peak")
    if state.banks is None:
        raise HTTPException(503, "this service does not serve the prompt bank")
    try:
        c = state.banks.current().get(event.class_name)
    except (KeyError, ConfigError):
        raise HTTPException(409, f"class {event.class_name!r} is not in the live bank") from None
    if not c.by_example:
        raise HTTPException(
            409, f"class {c.name!r} is described in words; only a class by example takes examples"
        )


def _add_example(
    state: ApiState, event: EventRecord, body: Feedback, by: Principal
) -> dict[str, Any]:
    example, model = event_example(state, event.uuid)
    answer = add_example(state, event.class_name, example, model, by)
    return {"source": example.source, "class_version": answer["version"]}


def _find(state: ApiState, uuid: str) -> EventRecord:
    if not UUID_RE.match(uuid):
        raise HTTPException(404, f"no event {uuid[:64]!r}")
    event = state.repository.get_event(uuid)
    if event is None:
        raise HTTPException(404, f"no event {uuid!r}")
    return event


def media_file(state: ApiState, relative: str | None, what: str) -> Path:
    if not relative:
        raise HTTPException(404, f"this event has no {what}")
    root = state.media_dir.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        # Outside the media dir is answered like a missing file: nothing to learn from it.
        raise HTTPException(404, f"{what} file is gone (removed by media retention?)")
    return path


def event_links(event: EventRecord, state: ApiState) -> dict[str, Any]:
    data = event_json(event)
    base = f"/api/v1/events/{event.uuid}"
    data["snapshot_url"] = (
        state.signer.link(f"{base}/snapshot.jpg") if event.snapshot_path else None
    )
    data["clip_url"] = state.signer.link(f"{base}/clip.mp4") if event.clip_path else None
    return data


def score_series(samples: Sequence[ScoreSample], points: int) -> dict[str, list[Any]]:
    """At most `points` points: the samples in equal runs, each run its highest score
    (with that sample's time) and highest progress, so a peak is never averaged away."""
    ts: list[str | None] = []
    score: list[float] = []
    progress: list[float | None] = []
    step = max(1, math.ceil(len(samples) / points))
    for start in range(0, len(samples), step):
        run = samples[start : start + step]
        top = max(run, key=lambda s: s.score)
        signals = [s.signal for s in run if s.signal is not None]
        ts.append(iso(top.ts))
        score.append(round(float(top.score), 4))
        progress.append(round(float(max(signals)), 4) if signals else None)
    return {"ts": ts, "score": score, "progress": progress}
