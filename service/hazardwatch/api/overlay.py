"""Upload decoding, the hazard heatmap of `POST /api/v1/score?overlay=1` and the masks of
`?mask=1`, both from the patch evidence of `scoring/evidence.py`."""

from __future__ import annotations

import ctypes
import functools
import io

import cv2
import numpy as np
from fastapi import HTTPException, UploadFile
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from hazardwatch.api.errors import problem, unprocessable
from hazardwatch.api.security import too_large
from hazardwatch.records import Image
from hazardwatch.scoring.evidence import colour_of, label_map, patch_evidence
from hazardwatch.scoring.worker import ScoringWorker

MAX_PIXELS = 40_000_000  # a decompression bomb must not take the service's memory
# The model sees 224 px and the finest crop grid (16 cells, crops of two) 1/8 of the image:
# nothing is gained from more than this on the long side, so larger uploads are scaled down
# while decoding (JPEG: libjpeg's DCT scaling, never the full size in memory).
DECODE_MAX_SIDE = 2048
FORMATS = {"JPEG": "JPEG", "PNG": "PNG", "BMP": "BMP", "WEBP": "WebP"}  # as documented
GRID = 4  # heatmap cells per side; each crop spans two cells so it keeps some context


async def read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    """An upload's bytes; 413 past `api.max_upload_mb` (read no further than that)."""
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise HTTPException(413, too_large(max_bytes))
    return data


def one_example(event: str | None, keyframe: int | None, upload: UploadFile | None) -> None:
    """422 unless exactly one of event, keyframe or file names the example (search by
    example, a class's examples)."""
    given = [k for k, v in (("event", event), ("keyframe", keyframe), ("file", upload))
             if v is not None]  # fmt: skip
    if len(given) != 1:
        why = "give exactly one of event, keyframe or file" + (
            f"; got {', '.join(given)}" if given else ""
        )
        raise unprocessable(problem(["query"], why))


def decode_upload(data: bytes) -> Image:
    """Bytes of an image file → BGR array at most `DECODE_MAX_SIDE` on its long side; 415
    for anything that is not a JPEG, PNG, BMP or WebP (decided from the content, not the
    name), 413 for dimensions past `MAX_PIXELS` (read from the header, before decoding)."""
    if not data:
        empty = "the upload is empty; send an image file in the field 'file'"
        raise unprocessable(problem(["body", "file"], empty, "too_short"))
    try:
        with PILImage.open(io.BytesIO(data)) as probe:
            width, height = probe.size
            kind = probe.format
    except PILImage.DecompressionBombError:
        raise HTTPException(413, "image dimensions are too large; scale it down") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise HTTPException(
            415, "the upload is not a recognised image; send JPEG, PNG, BMP or WebP"
        ) from None
    if kind not in FORMATS:
        raise HTTPException(
            415, f"{kind or 'this'} images are not accepted; send JPEG, PNG, BMP or WebP"
        )
    if width * height > MAX_PIXELS:
        raise HTTPException(
            413, f"image is {width}x{height}, more than {MAX_PIXELS:,} pixels; scale it down"
        )
    image = cv2.imdecode(np.frombuffer(data, np.uint8), _read_flags(kind, max(width, height)))
    if image is None or image.ndim != 3 or min(image.shape[:2]) < 2:
        raise HTTPException(415, "the upload could not be decoded as a colour image")
    long_side = max(image.shape[:2])
    if long_side > DECODE_MAX_SIDE:
        scale = DECODE_MAX_SIDE / long_side
        size = (max(2, round(image.shape[1] * scale)), max(2, round(image.shape[0] * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    if width * height > DECODE_MAX_SIDE**2:
        _give_memory_back()
    decoded: Image = image
    return decoded


def _read_flags(kind: str, long_side: int) -> int:
    """A JPEG this much larger than needed is decoded at 1/2, 1/4 or 1/8 of its size."""
    if kind == "JPEG":
        for factor, flag in (
            (8, cv2.IMREAD_REDUCED_COLOR_8),
            (4, cv2.IMREAD_REDUCED_COLOR_4),
            (2, cv2.IMREAD_REDUCED_COLOR_2),
        ):
            if long_side // factor >= DECODE_MAX_SIDE:
                return int(flag)
    return int(cv2.IMREAD_COLOR)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None  # not glibc


def _give_memory_back() -> None:
    """After a large decode, hand freed heap back to the system (glibc keeps it otherwise:
    32 large uploads left the process 400 MB larger for good)."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def hazard_overlay(worker: ScoringWorker, image: Image, grid: int = GRID) -> bytes:
    """PNG of `image` with the summed hazard probability of each grid cell as a heatmap."""
    height, width = image.shape[:2]
    evidence = patch_evidence(worker.score_images, image, grid)
    bank, whole = evidence.bank, evidence.whole
    hazard_idx = [i for i, name in enumerate(bank.class_names) if name in bank.worded_hazards]
    heat = evidence.cells[hazard_idx].sum(axis=0)
    heat_img = cv2.resize(
        (np.clip(heat, 0, 1) * 255).astype(np.uint8), (width, height), cv2.INTER_CUBIC
    )
    colored = cv2.applyColorMap(heat_img, cv2.COLORMAP_JET)
    blended = cv2.addWeighted(image, 0.6, colored, 0.4, 0)
    worded = bank.worded  # a class by example's score is on another scale
    top = worded[int(np.argmax(whole[worded]))]
    label = f"{bank.class_names[top]} {whole[top]:.2f} | hazard {whole[hazard_idx].sum():.2f}"
    scale = max(0.5, width / 1200)
    cv2.putText(
        blended,
        label,
        (10, int(30 * scale)),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (255, 255, 255),
        max(1, int(2 * scale)),
        cv2.LINE_AA,
    )
    ok, png = cv2.imencode(".png", blended)
    if not ok:
        raise HTTPException(500, "the overlay could not be encoded as PNG")
    return bytes(png.tobytes())


def hazard_mask(
    worker: ScoringWorker,
    image: Image,
    mask_class: str | None,
    threshold: float,
    grid: int = GRID,
) -> tuple[bytes, dict[int, str]]:
    """A PNG mask and what its values mean. Without `mask_class`: an indexed (palette) PNG
    over the bank's hazard classes, value i+1 for the i-th, 0 for none. With it: a
    greyscale PNG, 255 where that class wins, 0 elsewhere. ValueError for an unknown class."""
    evidence = patch_evidence(worker.score_images, image, grid)
    bank = evidence.bank
    if mask_class is not None:
        labels = label_map(evidence, [mask_class], threshold)
        ok, png = cv2.imencode(".png", np.where(labels > 0, 255, 0).astype(np.uint8))
        legend = {255: mask_class}
    else:
        classes = bank.worded_hazards
        labels = label_map(evidence, classes, threshold)
        paletted = PILImage.fromarray(labels, mode="P")
        paletted.putpalette([v for i in range(len(classes) + 1) for v in colour_of(i)])
        buffer = io.BytesIO()
        paletted.save(buffer, format="PNG")
        ok, png = True, np.frombuffer(buffer.getvalue(), np.uint8)
        legend = {i + 1: name for i, name in enumerate(classes)}
    if not ok:
        raise HTTPException(500, "the mask could not be encoded as PNG")
    return bytes(png.tobytes()), legend
