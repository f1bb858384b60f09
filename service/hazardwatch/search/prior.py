"""What a class by example may alert on before a camera has learned it: its prior, from
the keyframes each camera already stored (issue 26.4).

A new class by example learns each camera's normal online (detect/learning.py) before its
threshold comes from the false-alarm budget; meanwhile it is decided on this prior, as a
camera never calibrated is on the bank's. The stored keyframes (one every
`search.keyframe_interval_s` while there was motion; events' peaks left out) are samples of
each camera's normal scenes, so their scores for the new class say where normal lies:

- `band`: the 5th percentile, median and 95th of their probabilities, each camera weighing
  the same (`thresholds.band_of`);
- `noise`: per camera the upper-half scale of the scores' logits ((95th − median) / 1.645,
  as calibration measures it), the largest over the cameras;
- `burst`: `REPLAY_SAFETY` × the highest excess any keyframe reached over its camera's
  median, in those noise units, and at least `MIN_BURST_Z`: what the prior calls extreme
  is a sight further out than anything the cameras' stored normal showed;
- `threshold`: `SUSTAIN_S` seconds at the burst limit, so sustained evidence below it
  does not alert before the camera has learned the class.

Single keyframes are noisier than the detector's smoothed score, so this errs towards
silence. A camera with fewer than `MIN_KEYFRAMES` keyframes does not count; with none, the
class has no prior and stays silent until it is learned.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from hazardwatch.detect.evidence import MIN_NOISE
from hazardwatch.detect.thresholds import MIN_BURST_Z, REPLAY_SAFETY, Z95, band_of
from hazardwatch.records import ClassNormal
from hazardwatch.scoring.bank import example_probability
from hazardwatch.storage.keyframes import KeyframeTable

PER_CAMERA = 1000  # keyframes read per camera (the newest)
MIN_KEYFRAMES = 30
SUSTAIN_S = 60.0


def scores(examples: npt.NDArray[np.float32], keyframes: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The class's probability on each keyframe ([E, D] examples, [N, D] keyframes)."""
    rows = np.asarray(keyframes, np.float32)
    rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    return example_probability(examples @ rows.T)


def prior_of(per_camera: Iterable[npt.ArrayLike]) -> ClassNormal | None:
    """The prior from each camera's keyframe scores (module doc); None: too few."""
    runs = [np.asarray(p, np.float64) for p in per_camera]
    runs = [p for p in runs if p.size >= MIN_KEYFRAMES]
    if not runs:
        return None
    low, level, high = band_of(runs)
    noise, highest = MIN_NOISE, 0.0
    logits = [np.log(np.clip(p, 1e-6, 1 - 1e-6) / np.clip(1 - p, 1e-6, 1)) for p in runs]
    for x in logits:
        median = float(np.median(x))
        noise = max(noise, (float(np.quantile(x, 0.95)) - median) / Z95)
    for x in logits:
        highest = max(highest, float((x - np.median(x)).max()) / noise)
    burst = max(REPLAY_SAFETY * highest, MIN_BURST_Z)
    return ClassNormal(low, level, high, noise, SUSTAIN_S * burst, burst)


def keyframe_prior(
    table: KeyframeTable,
    examples: npt.NDArray[np.float32],
    model_name: str,
    cameras: Iterable[str] | None = None,
) -> ClassNormal | None:
    """The prior of examples of `model_name` over the stored keyframes of `cameras` (None:
    every camera that has some), one camera at a time."""
    names = list(cameras) if cameras is not None else table.cameras(model_name=model_name)
    per_camera = []
    for camera in names:
        rows = table.normal_embeddings(camera, model_name=model_name, limit=PER_CAMERA)
        if rows.shape[0] and rows.shape[1] == examples.shape[1]:
            per_camera.append(scores(examples, rows))
    return prior_of(per_camera)
