"""Search past footage: keyframes (and the events whose peaks they are) ranked by
similarity to words, to an event, to a keyframe or to an uploaded image; and each
keyframe's thumbnail. What a score means: search/service.py."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, File, HTTPException, Path, Query, UploadFile
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from hazardwatch.api.accounts import Principal
from hazardwatch.api.errors import problem, unprocessable
from hazardwatch.api.events import event_links, media_file
from hazardwatch.api.overlay import decode_upload, one_example, read_upload
from hazardwatch.api.schemas import (
    UUID_PATTERN,
    IsoTime,
    LinkExpiry,
    LinkSignature,
    Responses,
    errors,
)
from hazardwatch.api.security import requires
from hazardwatch.api.state import RETRY_AFTER_S, ApiState
from hazardwatch.detect.normal import decode_embedding
from hazardwatch.errors import EmbedderUnavailableError
from hazardwatch.outputs.alerts import iso
from hazardwatch.search.embedder import QueryEmbedder
from hazardwatch.search.service import KeyframeSearch, Match
from hazardwatch.settings import ApiSettings

MAX_RESULTS = 200
MAX_QUERY_CHARS = 300
EMBEDDING_AT_ONCE = 2  # uploads decoded and embedded at the same time
Limit = Annotated[int, Query(ge=1, le=MAX_RESULTS, description="Results at most")]
Camera = Annotated[
    str | None, Query(min_length=1, max_length=64, description="Only this camera's keyframes")
]


def router(state: ApiState, settings: ApiSettings, auth: Responses) -> APIRouter:
    router = APIRouter(tags=["search"], responses=auth)
    max_bytes = int(settings.max_upload_mb * 1e6)
    slots = asyncio.Semaphore(EMBEDDING_AT_ONCE)

    @router.get(
        "/api/v1/search",
        responses=errors(e503="Search is off, or no model can embed the words now"),
    )
    def search_text(
        q: Annotated[
            str,
            Query(
                min_length=1,
                max_length=MAX_QUERY_CHARS,
                description="What to look for, in words: 'truck on fire'",
            ),
        ],
        camera: Camera = None,
        since: IsoTime | None = None,
        until: IsoTime | None = None,
        limit: Limit = 50,
        *,
        by: Annotated[Principal, Depends(requires("viewer"))],
    ) -> dict[str, Any]:
        """Keyframes ranked by similarity to the words, best first, each with its camera,
        time, thumbnail and the event whose peak it is (if any). `score` is comparable
        across queries: how far above the query's typical stored frame, in units of
        ordinary frames' spread (3 and up stands out; docs/search.md)."""
        if not q.strip():
            raise unprocessable(problem(["query", "q"], "the query is blank; type some words"))
        started = time.perf_counter()
        search, embedder = _ready(state)
        vector = _embed(lambda: embedder.text(q.strip()))
        matches = _search(search, vector, limit, cameras=_cameras(camera), since=since, until=until)
        return _answer(state, search, matches, "text", started, {"q": q})

    @router.post(
        "/api/v1/search/similar",
        responses=errors(
            e404="No such event or keyframe, or the event has no embedding",
            e409="The example was embedded by another model than the keyframes",
            e413="The upload or the image's pixel count is over the limit",
            e415="Not an image this service can decode",
            e503="Search is off, or no model can embed the image now",
        ),
    )
    async def search_similar(
        event: Annotated[
            str | None, Query(pattern=UUID_PATTERN, description="Like this event's peak")
        ] = None,
        keyframe: Annotated[
            int | None, Query(ge=1, le=2**62, description="Like this keyframe")
        ] = None,
        # Typed without None, so the document offers a file or nothing, never a null.
        file: Annotated[
            UploadFile, File(description="Like this image (JPEG, PNG, BMP, WebP)")
        ] = None,  # type: ignore[assignment]
        camera: Camera = None,
        since: IsoTime | None = None,
        until: IsoTime | None = None,
        limit: Limit = 50,
        *,
        by: Annotated[Principal, Depends(requires("viewer"))],
    ) -> dict[str, Any]:
        """Keyframes most like an event's peak (`event`), a stored keyframe (`keyframe`) or
        an uploaded image (multipart field `file`): give exactly one. The example itself
        is left out of the results."""
        upload: UploadFile | None = file  # None when not given, whatever its annotation
        one_example(event, keyframe, upload)
        started = time.perf_counter()
        search, embedder = _ready(state, need_model=upload is not None)
        exclude: set[int] = set()
        if upload is not None:
            data = await read_upload(upload, max_bytes)
            async with slots:
                image = await run_in_threadpool(decode_upload, data)
                assert embedder is not None
                vector = await run_in_threadpool(_embed, lambda: embedder.image(image))
            example: dict[str, Any] = {"file": upload.filename or "upload"}
        elif event is not None:
            vector = await run_in_threadpool(_event_vector, state, search, event)
            example = {"event": event}
        else:
            assert keyframe is not None
            vector = await run_in_threadpool(_keyframe_vector, search, keyframe)
            example = {"keyframe": keyframe}
            exclude.add(keyframe)

        def answer() -> dict[str, Any]:  # the index and the rows: off the event loop
            matches = _search(
                search, vector, limit + (1 if event else 0), cameras=_cameras(camera),
                since=since, until=until, exclude=exclude,
            )  # fmt: skip
            if event is not None:
                matches = [m for m in matches if m.keyframe.event_uuid != event][:limit]
            return _answer(state, search, matches, "similar", started, example)

        return await run_in_threadpool(answer)

    @router.get(
        "/api/v1/keyframes/{keyframe_id}/thumbnail.jpg",
        response_class=FileResponse,
        responses={
            200: {"content": {"image/jpeg": {}}, "description": "The keyframe's thumbnail"},
            **errors(e404="No such keyframe, or its thumbnail is gone"),
        },
    )
    def thumbnail(
        keyframe_id: Annotated[int, Path(ge=1, le=2**62)],
        exp: LinkExpiry = None,
        sig: LinkSignature = None,
    ) -> FileResponse:
        found = state.repository.keyframes.get([keyframe_id]).get(keyframe_id)
        if found is None:
            raise HTTPException(404, f"no keyframe {keyframe_id} (removed by retention?)")
        return FileResponse(
            media_file(state, found.thumbnail_path, "thumbnail"), media_type="image/jpeg"
        )

    return router


def _ready(state: ApiState, need_model: bool = True) -> tuple[KeyframeSearch, QueryEmbedder]:
    search, embedder = state.search, state.embedder
    if search is None:
        raise HTTPException(503, "search is off (search.enabled: false)")
    if embedder is None and need_model:
        raise HTTPException(
            503,
            "no model can embed the query yet (it is loading); retry in a moment",
            headers={"Retry-After": RETRY_AFTER_S},
        )
    return search, embedder  # type: ignore[return-value]


def _embed(make: Any) -> np.ndarray:
    try:
        return np.asarray(make(), np.float32)
    except EmbedderUnavailableError as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": RETRY_AFTER_S}) from None
    except ValueError as exc:  # an image too small for the model's preprocessing
        why = f"the image cannot be embedded: {exc}"
        raise unprocessable(problem(["body", "file"], why)) from None


def _event_vector(state: ApiState, search: KeyframeSearch, uuid: str) -> np.ndarray:
    record = state.repository.get_event(uuid)
    if record is None:
        raise HTTPException(404, f"no event {uuid!r}")
    if record.peak_embedding is None:
        raise HTTPException(404, f"event {uuid} has no stored embedding to compare with")
    if record.model_name != search.model_name:
        raise HTTPException(
            409,
            f"event {uuid} was embedded by {record.model_name or 'an unnamed model'} and the "
            f"keyframes by {search.model_name}: their vectors do not compare",
        )
    return decode_embedding(record.peak_embedding)


def _keyframe_vector(search: KeyframeSearch, keyframe: int) -> np.ndarray:
    found = search.table.embedding(keyframe)
    if found is None:
        raise HTTPException(404, f"no keyframe {keyframe} (removed by retention?)")
    vector, model = found
    if model != search.model_name:
        raise HTTPException(
            409,
            f"keyframe {keyframe} was embedded by {model}, the index holds {search.model_name}"
            "'s: run `hazardwatch reindex`",
        )
    return np.frombuffer(vector, np.float16).astype(np.float32)


def _search(search: KeyframeSearch, vector: np.ndarray, limit: int, **filters: Any) -> list[Match]:
    try:
        return search.search(vector, limit, **filters)
    except ValueError as exc:  # a query of another model's dimension
        raise HTTPException(409, str(exc)) from None


def _cameras(camera: str | None) -> list[str] | None:
    return [camera] if camera is not None else None


def _answer(
    state: ApiState,
    search: KeyframeSearch,
    matches: list[Match],
    kind: str,
    started: float,
    query: dict[str, Any],
) -> dict[str, Any]:
    events: dict[str, Any] = {}
    for m in matches:
        uuid = m.keyframe.event_uuid
        if uuid is not None and uuid not in events:
            record = state.repository.get_event(uuid)
            events[uuid] = event_links(record, state) if record is not None else None
    seconds = time.perf_counter() - started
    state.metrics.search_seconds.labels(kind).observe(seconds)
    return {
        "query": query,
        "model": search.model_name,
        "loading": search.loading,
        "searched": len(search.index) if search.index is not None else 0,
        "took_ms": round(seconds * 1000, 1),
        "items": [_item(state, m, events) for m in matches],
    }


def _item(state: ApiState, match: Match, events: dict[str, Any]) -> dict[str, Any]:
    k = match.keyframe
    return {
        "keyframe": k.id,
        "camera": k.camera,
        "ts": iso(k.ts),
        "similarity": round(match.similarity, 4),
        "score": round(match.score, 2),
        "thumbnail_url": state.signer.link(f"/api/v1/keyframes/{k.id}/thumbnail.jpg"),
        "event": events.get(k.event_uuid) if k.event_uuid is not None else None,
    }
