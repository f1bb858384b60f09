"""Calibrating a camera without a clip: from the score rows already stored for it.

`hazardwatch calibrate --camera NAME --from-history HOURS` reads the camera's stored
class probabilities of the last HOURS, leaves out every event's span (with
`EVENT_MARGIN_S` either side: an event's onset and tail are not normal, and a verdict of
false alarm or confirmed belongs to an event, so its frames go with it), and calibrates
each hazard class on what remains with the live method (`normal.calibrate`: band, noise
and a threshold for `detector.false_alarms_per_day`). The camera's normal references
(calibration frames, false-alarm verdicts) are kept: stored scores hold no embeddings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from hazardwatch.detect.evidence import EvidenceParams
from hazardwatch.detect.normal import CameraNormal, calibrate
from hazardwatch.errors import ConfigError
from hazardwatch.records import ScoreSample
from hazardwatch.storage.repository import Repository

log = logging.getLogger(__name__)

EVENT_MARGIN_S = 30.0
# Less normal history than this says too little about a camera's noise to calibrate on.
MIN_HISTORY_S = 600.0

Span = tuple[datetime, datetime]
Series = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]  # (probabilities, times)


def normal_history(
    samples: Sequence[ScoreSample],
    spans: Sequence[Span],
    classes: Sequence[str],
    margin_s: float = EVENT_MARGIN_S,
) -> dict[str, Series]:
    """Each class's stored probabilities outside every event span (widened by `margin_s`),
    in time order, with times in seconds since the epoch."""
    margin = timedelta(seconds=margin_s)
    excluded = [(start - margin, end + margin) for start, end in spans]
    wanted = set(classes)
    rows: dict[str, list[tuple[float, float]]] = {name: [] for name in classes}
    for sample in samples:
        if sample.class_name not in wanted:
            continue
        if any(start <= sample.ts <= end for start, end in excluded):
            continue
        rows[sample.class_name].append((sample.ts.timestamp(), float(sample.score)))
    out = {}
    for name, points in rows.items():
        if points:
            points.sort()
            times, values = zip(*points, strict=True)
            out[name] = (np.array(values, np.float64), np.array(times, np.float64))
    return out


def covered_s(series: Series, max_gap_s: float) -> float:
    """Seconds of footage a series stands for: the sum of its sample spacings, a gap
    (no frame stored: camera down, an excluded event) counting at most `max_gap_s`."""
    _, times = series
    return float(np.minimum(np.diff(times), max_gap_s).sum()) if times.size > 1 else 0.0


def calibrate_from_history(
    repository: Repository,
    camera: str,
    hours: float,
    classes: Sequence[str],
    params: EvidenceParams,
    false_alarms_per_day: float,
    stored: CameraNormal | None = None,
    *,
    now: datetime | None = None,
    score_interval_s: float = 1.0,
) -> CameraNormal:
    """The camera's calibrated state from its stored history (see the module docstring).

    ConfigError when under `MIN_HISTORY_S` of normal history remains for some class.
    `stored`: the camera's current state, whose normal references are kept.
    """
    if not hours > 0:
        raise ConfigError(f"--from-history {hours}: give the hours of history to use, above 0")
    until = now or datetime.now(UTC)
    since = until - timedelta(hours=hours)
    samples = repository.list_scores(camera, since, until)
    spans = repository.event_spans(camera, since, until)
    history = normal_history(samples, spans, classes)
    # A stored row stands for the frames of its sampling interval; a gap longer than a
    # few intervals is time nothing was stored for.
    max_gap_s = 5.0 * max(score_interval_s, 1.0)
    seconds = {
        name: covered_s(history[name], max_gap_s) if name in history else 0.0 for name in classes
    }
    short = sorted(name for name, s in seconds.items() if s < MIN_HISTORY_S)
    if short:
        raise ConfigError(
            f"camera {camera!r}: the last {hours:g} h hold {min(seconds.values()):.0f} s of "
            f"normal score history for {', '.join(short)} ({len(spans)} event(s) left out); "
            f"at least {MIN_HISTORY_S:.0f} s are needed: give more hours, let the service "
            "store scores for longer (storage.write_scores), or calibrate from a video"
        )
    fitted = calibrate(
        [{name: history[name][0]} for name in classes],
        [history[name][1] for name in classes],
        params,
        false_alarms_per_day,
    )
    state = CameraNormal(
        classes=fitted,
        references=stored.references if stored is not None else CameraNormal().references,
        source="calibrated",
        calibrated_s=min(seconds.values()),
        calibrated_at=time.time(),
    )
    log.info(
        "camera %s calibrated from %.0f s of stored history (%d event(s) left out)",
        camera,
        state.calibrated_s,
        len(spans),
    )
    return state
