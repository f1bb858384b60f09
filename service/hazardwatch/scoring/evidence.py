"""Patch evidence: where in an image each class is, from CLIP scores of overlapping crops.

CLIP scores a whole image; to see *where* a class is, the image is cut into a grid of
`grid`×`grid` cells and every 2×2 block of cells is scored as one crop (so each crop keeps
some context), (grid-1)² crops plus the whole image in one batch. A cell's evidence for a
class is the mean of that class's probability over the crops that cover it. The heatmap
overlay (`POST /api/v1/score?overlay=1`) draws the hazard classes' sum; masks
(`?mask=1`, `hazardwatch eval masks`) label pixels from it.

How a mask is made from the evidence (`label_map`): each class's cell evidence is
interpolated bilinearly to the image size; a pixel gets the class among the requested ones
with the highest evidence, when that evidence reaches `threshold`, else no class (0).
Masks are therefore coarse by construction: at grid 4 they can follow an object only to
about a quarter of the image, whatever the model (docs/detection.md: zero-shot masks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from hazardwatch.records import Image
from hazardwatch.scoring.bank import PromptBank

Scorer = Callable[[list[Image]], tuple[PromptBank, npt.NDArray[np.float64], object]]
MIN_CELL_PX = 16
MAX_LABEL_SIDE = 1024  # labels are computed at most this large, then resized (nearest)


@dataclass(frozen=True)
class Evidence:
    """Per-class evidence on the cell grid, and the whole image's class probabilities."""

    bank: PromptBank
    cells: npt.NDArray[np.float64]  # [classes, grid, grid]
    whole: npt.NDArray[np.float64]  # [classes]
    size: tuple[int, int]  # (width, height) of the image

    def of(self, class_name: str) -> npt.NDArray[np.float64]:
        cells: npt.NDArray[np.float64] = self.cells[self.bank.class_names.index(class_name)]
        return cells


def patch_evidence(score_images: Scorer, image: Image, grid: int = 4) -> Evidence:
    """Score the crops of `image` (see the module docstring). ValueError when the image is
    too small for the grid."""
    if grid < 2:
        raise ValueError(f"grid {grid} is too coarse; it must be at least 2")
    height, width = image.shape[:2]
    if min(height, width) < grid * MIN_CELL_PX:
        raise ValueError(
            f"{width}x{height} is too small for a {grid}x{grid} grid "
            f"(at least {grid * MIN_CELL_PX} px a side)"
        )
    cell_w, cell_h = width / grid, height / grid
    crops: list[Image] = []
    cells: list[tuple[int, int]] = []
    for row in range(grid - 1):
        for col in range(grid - 1):
            x0, y0 = round(col * cell_w), round(row * cell_h)
            x1, y1 = round((col + 2) * cell_w), round((row + 2) * cell_h)
            crops.append(image[y0:y1, x0:x1])
            cells.append((row, col))
    crops.append(image)
    bank, probs, _ = score_images(crops)
    classes = len(bank.class_names)
    heat = np.zeros((classes, grid, grid), np.float64)
    weight = np.zeros((grid, grid), np.float64)
    for (row, col), p in zip(cells, probs[:-1], strict=True):
        heat[:, row : row + 2, col : col + 2] += p[:, None, None]
        weight[row : row + 2, col : col + 2] += 1
    return Evidence(bank, heat / np.maximum(weight, 1), probs[-1], (width, height))


def upsample(cells: npt.NDArray[np.float64], size: tuple[int, int]) -> npt.NDArray[np.float32]:
    """Cell values interpolated bilinearly to `size` (width, height)."""
    resized: npt.NDArray[np.float32] = cv2.resize(
        cells.astype(np.float32), size, interpolation=cv2.INTER_LINEAR
    )
    return resized


def label_map(
    evidence: Evidence, classes: Sequence[str], threshold: float = 0.0
) -> npt.NDArray[np.uint8]:
    """[height, width] labels: i+1 where `classes[i]` wins (its evidence highest among
    `classes` and at least `threshold`), 0 where none reaches the threshold."""
    if not classes:
        raise ValueError("no class to label")
    if len(classes) > 254:
        raise ValueError("at most 254 classes fit a label map")
    unknown = [c for c in classes if c not in evidence.bank.class_names]
    if unknown:
        raise ValueError(
            f"class(es) {', '.join(unknown)} are not in the prompt bank "
            f"(it has {', '.join(evidence.bank.class_names)})"
        )
    width, height = evidence.size
    scale = min(1.0, MAX_LABEL_SIDE / max(width, height))
    small = (max(1, round(width * scale)), max(1, round(height * scale)))
    stack = np.stack([upsample(evidence.of(c), small) for c in classes])
    best = stack.argmax(axis=0)
    labels = np.where(stack.max(axis=0) >= threshold, best + 1, 0).astype(np.uint8)
    if small != (width, height):
        labels = cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)
    return labels


# Distinct colours for class 1, 2, … of a palette mask (index 0, no class, is black).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
)  # fmt: skip


def colour_of(index: int) -> tuple[int, int, int]:
    """RGB colour of label `index` (1-based) in palette masks; 0 is black."""
    return (0, 0, 0) if index == 0 else PALETTE[(index - 1) % len(PALETTE)]
