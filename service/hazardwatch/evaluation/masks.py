"""Hazard masks scored as seed 004 scores its segmenter: per-class IoU and Dice, pixel accuracy.

The data is in seed 004's layout: `original/ORI_001.png` beside `ground_truth/GT_001.png`,
pairs matched by the number in the name, each class painted in one RGB colour
(`--colors "255,0,0=corrosion" …`). Predictions are our zero-shot masks (patch evidence,
`scoring/evidence.py`) over exactly those classes, or another model's masks in the same
colours (`--predictions DIR`), so a trained DeepLabV3+ and ours are compared on the same
pixels with the same code.

Metrics are pooled over the whole set (a confusion matrix of pixels): per class
IoU = TP / (TP + FP + FN) and Dice = 2·TP / (2·TP + FP + FN) (equal to the pixel F1),
precision and recall; their means over the classes present in truth or prediction; and
pixel accuracy, the share of pixels whose predicted class is the true one. A pixel our
masks leave unlabelled (below the threshold) counts against its true class.

A pair that cannot be scored (sizes differ, a colour not in the map, no partner file, an
unreadable file) is reported with the file and the reason, and the others go on.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from hazardwatch.errors import ConfigError
from hazardwatch.records import Image
from hazardwatch.scoring.bank import PromptBank
from hazardwatch.scoring.evidence import Scorer, label_map, patch_evidence
from hazardwatch.scoring.model import Encoder
from hazardwatch.scoring.preprocess import preprocess_batch
from hazardwatch.scoring.worker import TextIndex

Labels = npt.NDArray[np.int64]  # class index per pixel; len(classes) = no class
Predictor = Callable[[npt.NDArray[np.uint8]], Labels]  # BGR image -> labels
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class MaskError(Exception):
    """One pair cannot be scored: the file at fault and the problem."""

    def __init__(self, file: Path | str, problem: str) -> None:
        super().__init__(f"{file}: {problem}")
        self.file = str(file)
        self.problem = problem


@dataclass(frozen=True)
class ColourMap:
    """RGB colour → class, in the order the classes were given."""

    colours: dict[tuple[int, int, int], int]
    classes: tuple[str, ...]

    @classmethod
    def parse(cls, specs: Sequence[str]) -> ColourMap:
        """`["255,0,0=corrosion", "0,0,255=asset", …]`; ConfigError names a bad entry."""
        colours: dict[tuple[int, int, int], int] = {}
        classes: list[str] = []
        for spec in specs:
            match = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*=\s*(\S+)\s*", spec)
            if match is None:
                raise ConfigError(f"--colors entry {spec!r} is not R,G,B=class (e.g. 255,0,0=fire)")
            rgb = tuple(int(v) for v in match.groups()[:3])
            if any(v > 255 for v in rgb):
                raise ConfigError(f"--colors entry {spec!r}: channel values are 0-255")
            colour = (rgb[0], rgb[1], rgb[2])
            if colour in colours:
                raise ConfigError(f"--colors: colour {spec.split('=')[0].strip()} is given twice")
            name = match.group(4)
            if name not in classes:
                classes.append(name)
            colours[colour] = classes.index(name)
        if not classes:
            raise ConfigError("--colors: give at least one R,G,B=class")
        return cls(colours, tuple(classes))

    def decode(self, rgb: npt.NDArray[np.uint8], name: str) -> Labels:
        """[H, W, 3] RGB → class indices; MaskError for colours not in the map."""
        packed = (
            (rgb[..., 0].astype(np.int64) << 16)
            | (rgb[..., 1].astype(np.int64) << 8)
            | rgb[..., 2].astype(np.int64)
        )
        labels = np.full(packed.shape, -1, np.int64)
        for (r, g, b), index in self.colours.items():
            labels[packed == (r << 16 | g << 8 | b)] = index
        unknown = labels < 0
        if unknown.any():
            values, counts = np.unique(packed[unknown], return_counts=True)
            shown = ", ".join(
                f"({v >> 16},{v >> 8 & 255},{v & 255}) ×{c}"
                for v, c in sorted(zip(values, counts, strict=True), key=lambda x: -x[1])[:5]
            )
            raise MaskError(
                name,
                f"{int(unknown.sum())} pixel(s) of colours not in --colors: {shown}; add "
                "them as R,G,B=class (masks must be saved without smoothing or JPEG)",
            )
        return labels


def number_of(path: Path) -> int | None:
    """The pair number in a file name: the last run of digits (ORI_001.png → 1)."""
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else None


def index_folder(folder: Path) -> tuple[dict[int, Path], list[dict[str, str]]]:
    """Image files of a folder by pair number, and the files that cannot be paired."""
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a directory")
    found: dict[int, Path] = {}
    problems = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        number = number_of(path)
        if number is None:
            problems.append({"file": str(path), "error": "no number in the name to pair it by"})
        elif number in found:
            problems.append(
                {"file": str(path), "error": f"number {number} is also {found[number].name}"}
            )
        else:
            found[number] = path
    return found, problems


def pair_up(images: Path, masks: Path) -> tuple[list[tuple[int, Path, Path]], list[dict[str, str]]]:
    """(number, image, truth) for every number present in both folders; the rest are errors."""
    by_image, problems = index_folder(images)
    by_mask, mask_problems = index_folder(masks)
    problems += mask_problems
    for number in sorted(by_image.keys() - by_mask.keys()):
        problems.append(
            {"file": str(by_image[number]), "error": f"no ground truth numbered {number}"}
        )
    for number in sorted(by_mask.keys() - by_image.keys()):
        problems.append({"file": str(by_mask[number]), "error": f"no image numbered {number}"})
    pairs = [(n, by_image[n], by_mask[n]) for n in sorted(by_image.keys() & by_mask.keys())]
    return pairs, problems


def read_rgb(path: Path) -> npt.NDArray[np.uint8]:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise MaskError(path, "cannot be read as an image")
    rgb: npt.NDArray[np.uint8] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return rgb


def confusion(truth: Labels, predicted: Labels, classes: int) -> npt.NDArray[np.int64]:
    """[classes, classes + 1] pixel counts: rows true class, columns predicted (last: none)."""
    flat = truth.ravel() * (classes + 1) + predicted.ravel()
    counts = np.bincount(flat, minlength=classes * (classes + 1))
    matrix: npt.NDArray[np.int64] = counts.reshape(classes, classes + 1).astype(np.int64)
    return matrix


def scores(matrix: npt.NDArray[np.int64], classes: Sequence[str]) -> dict[str, Any]:
    """IoU, Dice, precision and recall per class, their means, and pixel accuracy."""
    per_class: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(classes):
        tp = int(matrix[i, i])
        fn = int(matrix[i].sum()) - tp
        fp = int(matrix[:, i].sum()) - tp
        union = tp + fp + fn
        per_class[name] = {
            "iou": tp / union if union else None,
            "dice": 2 * tp / (2 * tp + fp + fn) if union else None,
            "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / (tp + fn) if tp + fn else None,
            "true_pixels": tp + fn,
            "predicted_pixels": tp + fp,
        }
    ious = [m["iou"] for m in per_class.values() if m["iou"] is not None]
    dices = [m["dice"] for m in per_class.values() if m["dice"] is not None]
    total = int(matrix.sum())
    return {
        "per_class": per_class,
        "mean_iou": float(np.mean(ious)) if ious else None,
        "mean_dice": float(np.mean(dices)) if dices else None,
        "pixel_accuracy": float(np.trace(matrix[:, : len(classes)])) / total if total else None,
        "pixels": total,
        "unlabelled_pixels": int(matrix[:, -1].sum()),
    }


def evaluate_masks(
    images: Path,
    masks: Path,
    colours: ColourMap,
    predict: Predictor | None = None,
    predictions: Path | None = None,
    plots: Path | None = None,
    progress: Callable[[Iterable[Any]], Iterable[Any]] = lambda it: it,
    plot_rows: int = 12,
) -> dict[str, Any]:
    """Score every pair; `predict` (our masks) or `predictions` (a folder of another
    model's masks in the same colours) gives the predicted labels."""
    if (predict is None) == (predictions is None):
        raise ValueError("give exactly one of predict and predictions")
    pairs, problems = pair_up(images, masks)
    predicted_files: dict[int, Path] = {}
    if predictions is not None:
        predicted_files, prediction_problems = index_folder(predictions)
        problems += prediction_problems
    k = len(colours.classes)
    total = np.zeros((k, k + 1), np.int64)
    rows: list[npt.NDArray[np.uint8]] = []
    scored = 0
    for number, image_path, truth_path in progress(pairs):
        try:
            truth = colours.decode(read_rgb(truth_path), str(truth_path))
            bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise MaskError(image_path, "cannot be read as an image")
            if bgr.shape[:2] != truth.shape:
                raise MaskError(
                    image_path,
                    f"{bgr.shape[1]}x{bgr.shape[0]}, but {truth_path.name} is "
                    f"{truth.shape[1]}x{truth.shape[0]}; image and mask must be the same size",
                )
            guess = _predicted(
                number, (image_path, bgr), (truth_path, truth), colours, predict, predicted_files
            )
        except MaskError as exc:
            problems.append({"file": exc.file, "error": exc.problem})
            continue
        total += confusion(truth, guess, k)
        scored += 1
        if plots is not None and len(rows) < plot_rows:
            rows.append(_plot_row(bgr, truth, guess, colours, image_path.name))
    report = {
        "classes": list(colours.classes),
        "pairs_scored": scored,
        "skipped": len(problems),
        **scores(total, colours.classes),
        "confusion": {
            "rows_true": list(colours.classes),
            "columns_predicted": [*colours.classes, "(none)"],
            "pixels": total.tolist(),
        },
        "problems": problems,
    }
    if plots is not None and rows:
        plots.mkdir(parents=True, exist_ok=True)
        grid = np.vstack([_plot_header(rows[0].shape[1]), *rows])
        cv2.imwrite(str(plots / "masks.png"), grid)
        report["plot"] = str(plots / "masks.png")
    return report


def _predicted(
    number: int,
    image: tuple[Path, npt.NDArray[np.uint8]],
    truth: tuple[Path, Labels],
    colours: ColourMap,
    predict: Predictor | None,
    predicted_files: dict[int, Path],
) -> Labels:
    """The prediction for one pair: ours, or the other model's file with that number."""
    (image_path, bgr), (truth_path, labels) = image, truth
    if predict is not None:
        try:
            return predict(bgr)
        except ValueError as exc:  # e.g. too small for the crop grid
            raise MaskError(image_path, str(exc)) from None
    path = predicted_files.get(number)
    if path is None:
        raise MaskError(truth_path, f"no prediction numbered {number}")
    guess = colours.decode(read_rgb(path), str(path))
    if guess.shape != labels.shape:
        raise MaskError(
            path,
            f"{guess.shape[1]}x{guess.shape[0]}, but {truth_path.name} is "
            f"{labels.shape[1]}x{labels.shape[0]}; prediction and truth must match",
        )
    return guess


def colourise(labels: Labels, colours: ColourMap) -> npt.NDArray[np.uint8]:
    """Labels painted in the map's colours (BGR); unlabelled pixels black."""
    lut = np.zeros((len(colours.classes) + 1, 3), np.uint8)
    for (r, g, b), index in colours.colours.items():
        lut[index] = (b, g, r)
    painted: npt.NDArray[np.uint8] = lut[labels]
    return painted


PLOT_SIDE = 256
PLOT_COLUMNS = ("image", "ground truth", "prediction")


def _plot_header(width: int, side: int = PLOT_SIDE) -> npt.NDArray[np.uint8]:
    """The column titles above the rows."""
    header = np.full((28, width, 3), 255, np.uint8)
    for i, title in enumerate(PLOT_COLUMNS):
        x = i * (side + 4) + 6
        cv2.putText(
            header, title, (x, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA
        )
    return header


def _plot_row(
    bgr: npt.NDArray[np.uint8],
    truth: Labels,
    guess: Labels,
    colours: ColourMap,
    name: str = "",
    side: int = PLOT_SIDE,
) -> npt.NDArray[np.uint8]:
    """image | truth | prediction, each fitted into side×side, separated by white lines;
    the image's file name written on its tile."""
    gap = np.full((side, 4, 3), 255, np.uint8)
    tiles = [
        _fit(bgr, side, cv2.INTER_AREA),
        _fit(colourise(truth, colours), side, cv2.INTER_NEAREST),
        _fit(colourise(guess, colours), side, cv2.INTER_NEAREST),
    ]
    if name:
        label = name if len(name) <= 32 else name[:29] + "..."
        cv2.rectangle(tiles[0], (0, side - 22), (side - 1, side - 1), (0, 0, 0), -1)
        cv2.putText(tiles[0], label, (4, side - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (255, 255, 255), 1, cv2.LINE_AA)  # fmt: skip
    row = np.hstack([tiles[0], gap, tiles[1], gap, tiles[2]])
    out: npt.NDArray[np.uint8] = np.vstack([row, np.full((4, row.shape[1], 3), 255, np.uint8)])
    return out


def _fit(image: npt.NDArray[np.uint8], side: int, interpolation: int) -> npt.NDArray[np.uint8]:
    height, width = image.shape[:2]
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = cv2.resize(image, size, interpolation=interpolation)
    tile = np.full((side, side, 3), 255, np.uint8)
    tile[: size[1], : size[0]] = resized
    return tile


def progress_bar(items: Iterable[Any]) -> Iterable[Any]:
    """tqdm on stderr where it is a terminal; plain iteration elsewhere (logs, CI)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    bar: Iterable[Any] = tqdm(items, desc="masks", unit="pair", file=sys.stderr, disable=None)
    return bar


def zero_shot_predictor(
    score_images: Scorer, colours: ColourMap, threshold: float, grid: int
) -> Predictor:
    """Our masks over exactly the map's classes, as labels (`scoring/evidence.py`)."""
    none = len(colours.classes)

    def predict(bgr: npt.NDArray[np.uint8]) -> Labels:
        evidence = patch_evidence(score_images, bgr, grid)
        labels = label_map(evidence, colours.classes, threshold).astype(np.int64)
        out: Labels = np.where(labels == 0, none, labels - 1)
        return out

    return predict


def encoder_scorer(encoder: Encoder, bank: PromptBank, batch_size: int = 16) -> Scorer:
    """score_images for an encoder and a bank, outside the service (batched)."""
    index = TextIndex.build(bank, encoder)

    def score(images: list[Image]) -> tuple[PromptBank, npt.NDArray[np.float64], object]:
        parts = []
        for start in range(0, len(images), batch_size):
            batch = preprocess_batch(images[start : start + batch_size], encoder.resolution)
            parts.append(encoder.encode_images(batch).astype(np.float32))
        probs, sims = index.score(np.concatenate(parts), encoder.logit_scale)
        return bank, probs, sims

    return score
