"""Upload decoding and the hazard heatmap overlay of `POST /api/v1/score?overlay=1`."""

from __future__ import annotations

import io

import cv2
import numpy as np
from fastapi import HTTPException
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from hazardwatch.api.errors import problem, unprocessable
from hazardwatch.records import Image
from hazardwatch.scoring.worker import ScoringWorker

MAX_PIXELS = 40_000_000  # a decompression bomb must not take the service's memory
GRID = 4  # heatmap cells per side; each crop spans two cells so it keeps some context


def decode_upload(data: bytes) -> Image:
    """Bytes of an image file → BGR array; 415 for anything that is not a decodable image."""
    if not data:
        empty = "the upload is empty; send an image file in the field 'file'"
        raise unprocessable(problem(["body", "file"], empty, "too_short"))
    # Read only the header first: refuse huge dimensions before decoding (PNG bombs).
    try:
        with PILImage.open(io.BytesIO(data)) as probe:
            width, height = probe.size
    except PILImage.DecompressionBombError:
        raise HTTPException(413, "image dimensions are too large; scale it down") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise HTTPException(
            415, "the upload is not a recognised image; send JPEG, PNG, BMP or WebP"
        ) from None
    if width * height > MAX_PIXELS:
        raise HTTPException(
            413, f"image is {width}x{height}, more than {MAX_PIXELS:,} pixels; scale it down"
        )
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.ndim != 3 or min(image.shape[:2]) < 2:
        raise HTTPException(415, "the upload could not be decoded as a colour image")
    decoded: Image = image
    return decoded


def hazard_overlay(worker: ScoringWorker, image: Image) -> bytes:
    """PNG of `image` with the summed hazard probability of each grid cell as a heatmap."""
    height, width = image.shape[:2]
    if min(height, width) < GRID * 16:
        raise ValueError(f"{width}x{height} is too small for a {GRID}x{GRID} heatmap")
    cell_w, cell_h = width / GRID, height / GRID
    crops: list[Image] = []
    cells: list[tuple[int, int]] = []
    for row in range(GRID - 1):
        for col in range(GRID - 1):
            x0, y0 = round(col * cell_w), round(row * cell_h)
            x1, y1 = round((col + 2) * cell_w), round((row + 2) * cell_h)
            crops.append(image[y0:y1, x0:x1])
            cells.append((row, col))
    crops.append(image)
    bank, probs, _ = worker.score_images(crops)
    hazard_idx = [i for i, name in enumerate(bank.class_names) if name in bank.hazard_classes]
    hazard = probs[:, hazard_idx].sum(axis=1)
    heat = np.zeros((GRID, GRID), np.float64)
    weight = np.zeros((GRID, GRID), np.float64)
    for (row, col), value in zip(cells, hazard[:-1], strict=True):
        heat[row : row + 2, col : col + 2] += value
        weight[row : row + 2, col : col + 2] += 1
    heat = heat / np.maximum(weight, 1)
    heat_img = cv2.resize(
        (np.clip(heat, 0, 1) * 255).astype(np.uint8), (width, height), cv2.INTER_CUBIC
    )
    colored = cv2.applyColorMap(heat_img, cv2.COLORMAP_JET)
    blended = cv2.addWeighted(image, 0.6, colored, 0.4, 0)
    top = int(probs[-1].argmax())
    label = f"{bank.class_names[top]} {probs[-1][top]:.2f} | hazard {hazard[-1]:.2f}"
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
