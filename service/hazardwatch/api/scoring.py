"""Scoring an uploaded image with the live model: class probabilities and top prompts,
or a PNG heatmap, or a PNG mask of the hazard classes."""

from __future__ import annotations

import asyncio
import math
from typing import Annotated, Any

from fastapi import APIRouter, File, HTTPException, Query, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from hazardwatch.api.errors import problem, unprocessable
from hazardwatch.api.overlay import decode_upload, hazard_mask, hazard_overlay, read_upload
from hazardwatch.api.schemas import Responses, errors
from hazardwatch.api.state import RETRY_AFTER_S, ApiState
from hazardwatch.settings import ApiSettings

SCORING_AT_ONCE = 2  # uploads decoded and scored at the same time (the rest wait their turn)


def router(state: ApiState, settings: ApiSettings, auth: Responses) -> APIRouter:
    router = APIRouter(tags=["scoring"], responses=auth)
    max_bytes = int(settings.max_upload_mb * 1e6)
    scoring_slots = asyncio.Semaphore(SCORING_AT_ONCE)
    mask_threshold, mask_grid = settings.mask_threshold, settings.mask_grid

    @router.post(
        "/api/v1/score",
        response_model=None,
        responses={
            200: {
                "content": {"application/json": {}, "image/png": {}},
                "description": "Scores as JSON, or with overlay=1 a PNG heatmap, or with "
                "mask=1 a PNG mask (header X-Hazardwatch-Mask-Classes: value=class,…)",
            },
            **errors(
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
        data = await read_upload(file, max_bytes)
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
        # Classes by example this model cannot score are left out; the top hazard is of
        # the classes in words (a class by example's score is on another scale).
        classes = {n: float(p) for n, p in zip(bank.class_names, probs[0], strict=True)
                   if math.isfinite(p)}  # fmt: skip
        hazards = {n: p for n, p in classes.items() if n in bank.worded_hazards}
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

    return router
