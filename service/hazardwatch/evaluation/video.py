"""`hazardwatch eval video`: score every frame of a clip and write it in the score-matrix format.

The output (`scores/NAME.npy` [P, F] prompt similarities, `scores/NAME_prompts.json`) is
what `eval scores` reads, so users can label their own clips (`annotations/NAME.json`
with `events: [{"start", "end"}]`) and calibrate the detector on them. With annotations,
the clip is evaluated at once with the same code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from hazardwatch.capture.sources import SourceSpec, open_capture
from hazardwatch.records import Image
from hazardwatch.scoring.bank import PromptBank
from hazardwatch.scoring.model import Encoder
from hazardwatch.scoring.preprocess import preprocess_batch
from hazardwatch.scoring.worker import TextIndex


def _frames(path: Path) -> Iterator[Image]:
    capture = open_capture(SourceSpec("file", str(path)), open_timeout_s=30, read_timeout_s=30)
    try:
        while True:
            ok, image = capture.read()
            if not ok or image is None:
                return
            yield image
    finally:
        capture.release()


def frame_rate(path: Path) -> float:
    capture = cv2.VideoCapture(str(path))
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    capture.release()
    return fps if fps > 0 else 30.0


def score_video(
    path: Path,
    encoder: Encoder,
    bank: PromptBank,
    batch_size: int = 32,
    progress: bool = True,
    embeddings: bool = False,
) -> npt.NDArray[np.float32]:
    """[P, F] cosine similarities of every frame with every prompt of the bank
    (`embeddings`: the [F, D] L2-normalised image embeddings instead)."""
    index = TextIndex.build(bank, encoder)
    columns: list[npt.NDArray[np.float32]] = []
    pending: list[Image] = []
    total = int(cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT)) or None
    bar = tqdm(total=total, unit="frame", disable=not progress, desc=path.name)

    def flush() -> None:
        images = encoder.encode_images(preprocess_batch(pending, encoder.resolution))
        columns.append(images if embeddings else images @ index.prompt_embeddings.T)
        bar.update(len(pending))
        pending.clear()

    for image in _frames(path):
        pending.append(image)
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    bar.close()
    if not columns:
        raise ValueError(f"{path} holds no decodable frame")
    matrix = np.concatenate(columns).astype(np.float32)
    return matrix if embeddings else matrix.T


def write_matrix(
    out_dir: Path, name: str, matrix: npt.NDArray[np.float32], prompts: list[str]
) -> Path:
    scores = out_dir / "scores"
    scores.mkdir(parents=True, exist_ok=True)
    np.save(scores / f"{name}.npy", matrix)
    (scores / f"{name}_prompts.json").write_text(json.dumps({"prompts": prompts}, indent=1))
    return scores / f"{name}.npy"
