"""Calibrating a camera: from a clip of its normal footage (`calibrate_camera`), or
without one, from the score rows already stored for it (`calibrate_camera_from_history`).

`hazardwatch calibrate --camera NAME --from-history HOURS` reads the camera's stored
class probabilities of the last HOURS, leaves out every event's span (with
`EVENT_MARGIN_S` either side: an event's onset and tail are not normal, and a verdict of
false alarm or confirmed belongs to an event, so its frames go with it), and calibrates
each hazard class on what remains with the live method (`normal.calibrate`: band, noise
and a threshold for `detector.false_alarms_per_day`). The camera's normal references
(calibration frames, false-alarm verdicts) are kept: stored scores hold no embeddings.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt

from hazardwatch.capture.sources import SourceSpec
from hazardwatch.components import file_bank, load_encoder
from hazardwatch.detect.detector import DetectorParams
from hazardwatch.detect.evidence import EvidenceParams
from hazardwatch.detect.normal import CameraNormal, ReferenceSet, calibrate
from hazardwatch.errors import ConfigError, SourceError
from hazardwatch.events_side import state_record
from hazardwatch.records import ScoreSample
from hazardwatch.scoring.bank import PromptBank
from hazardwatch.scoring.bank_source import DatabaseBank
from hazardwatch.scoring.worker import TextIndex
from hazardwatch.settings import Settings
from hazardwatch.storage import migrate
from hazardwatch.storage.engine import check_connection, create_engine
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
    definitions: Mapping[str, str] | None = None,
) -> CameraNormal:
    """The camera's calibrated state from its stored history (see the module docstring).

    ConfigError when under `MIN_HISTORY_S` of normal history remains for every class (a
    class short of it, added lately, is left out: the camera learns it online).
    `stored`: the camera's current state, whose normal references are kept.
    `definitions`: what defines each class by example (recorded with its calibration).
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
    seconds_all = dict(seconds)  # the budget is shared among every class, learned or not
    short = sorted(name for name, s in seconds.items() if s < MIN_HISTORY_S)
    if short and len(short) < len(classes):
        # Classes added lately: left out, each camera learns them online.
        log.warning(
            "camera %s: %s left out (under %.0f s of normal score history: added lately?); "
            "the camera learns them online",
            camera, ", ".join(short), MIN_HISTORY_S,
        )  # fmt: skip
        classes = [name for name in classes if name not in short]
        seconds = {name: seconds[name] for name in classes}
    elif short:
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
        false_alarms_per_day * len(classes) / max(len(seconds_all), 1),
    )
    state = CameraNormal(
        classes=fitted,
        references=stored.references if stored is not None else CameraNormal().references,
        source="calibrated",
        calibrated_s=min(seconds.values()),
        calibrated_at=time.time(),
        definitions={k: v for k, v in (definitions or {}).items() if k in fitted},
    )
    log.info(
        "camera %s calibrated from %.0f s of stored history (%d event(s) left out)",
        camera,
        state.calibrated_s,
        len(spans),
    )
    return state


# ---------------------------------------------------------------------------- commands


def live_bank(settings: Settings, repository: Repository) -> PromptBank:
    """The bank the service scores with: the newest version edited through the API (the
    database wins), else the bank file."""
    return DatabaseBank(repository.banks, file_bank(settings)).current()


def _definitions(bank: PromptBank) -> dict[str, str]:
    return {c.name: c.definition for c in bank.classes if c.by_example}


def _calibrated_camera_kind(settings: Settings, camera: str, force: bool) -> str:
    """The source kind of a camera about to be calibrated; a camera not in the
    configuration is refused unless `force` (its state would never be used)."""
    configured = {c.name: c for c in settings.cameras}
    if camera not in configured and not force:
        known = ", ".join(sorted(configured)) or "none: the configuration has no cameras"
        raise ConfigError(
            f"camera {camera!r} is not in the configuration (configured: {known}); check "
            "the name, or pass --force to store a state for it all the same"
        )
    kind = "unknown"
    if camera in configured:
        with contextlib.suppress(SourceError):
            kind = SourceSpec.parse(configured[camera].url.get_secret_value()).kind
    return kind


def _store_calibration(repository: Repository, camera: str, kind: str, state: CameraNormal) -> None:
    repository.ensure_cameras([(camera, kind)])
    record = state_record(camera, state)
    repository.save_camera_state(
        camera, record.state, record.source, record.references, replace_newer=True
    )


def calibrate_camera_from_history(
    settings: Settings, camera: str, hours: float, *, force: bool = False
) -> CameraNormal:
    """Calibrate a camera from its stored score rows of the last `hours` (calibration.py)
    and store the state, keeping its normal references. No model is loaded."""
    kind = _calibrated_camera_kind(settings, camera, force)
    engine = create_engine(settings.storage.resolved_url())
    try:
        check_connection(engine)
        migrate.upgrade(engine)
        repository = Repository(engine)
        text = repository.load_camera_states().get(camera)
        stored = None
        if text is not None:
            with contextlib.suppress(ValueError, ConfigError):  # unreadable: nothing to keep
                stored = CameraNormal.from_json(json.loads(text), settings.detector.max_references)
        bank = live_bank(settings, repository)
        params = DetectorParams.from_settings(settings.detector)
        state = calibrate_from_history(
            repository,
            camera,
            hours,
            [c.name for c in bank.classes if c.kind == "hazard" and c.watched_on(camera)],
            params.evidence,
            params.false_alarms_per_day,
            stored,
            score_interval_s=settings.storage.score_interval_s,
            definitions=_definitions(bank),
        )
        _store_calibration(repository, camera, kind, state)
        return state
    finally:
        engine.dispose()


def calibrate_camera(
    settings: Settings, camera: str, video: Path, *, force: bool = False
) -> CameraNormal:
    """Learn a camera's normal from a clip of its normal footage and store it.

    Every frame is scored with the live model and bank; each hazard class's smoothed
    probability gives its band, and evenly spaced frames become normal references. The
    camera name, the video and the database are checked first (a typo, a file that is not
    a video or a bad URL fails before the model loads). A camera that is not configured is
    refused unless `force` (its state would never be used).
    """
    from hazardwatch.capture.sources import open_capture
    from hazardwatch.evaluation.video import frame_rate, score_video

    kind = _calibrated_camera_kind(settings, camera, force)
    try:
        opened = open_capture(SourceSpec("file", str(video)), 30.0, 30.0)
        readable = opened.grab()
        opened.release()
    except SourceError as exc:
        raise ConfigError(f"calibrate: {exc}; pass a video file of normal footage") from None
    if not readable:
        raise ConfigError(
            f"calibrate: {video} holds no decodable frame; pass a video file of normal footage"
        )
    engine = create_engine(settings.storage.resolved_url())
    try:
        check_connection(engine)
        migrate.upgrade(engine)
        bank = live_bank(settings, Repository(engine))
        encoder = load_encoder(settings)
        index = TextIndex.build(bank, encoder)
        try:
            embeddings = score_video(
                video, encoder, bank, settings.scoring.batch_size, progress=False, embeddings=True
            )
        except ValueError as exc:  # no decodable frame
            raise ConfigError(f"calibrate: {exc}; pass a video file of normal footage") from None
        probs, _ = index.score(embeddings, encoder.logit_scale)
        fps = frame_rate(video)
        times = np.arange(len(embeddings)) / fps
        columns = {name: probs[:, i] for i, name in enumerate(bank.class_names)}
        # A class by example of another model is not scored (NaN): the camera learns it.
        watched = [c.name for c in bank.classes if c.kind == "hazard" and c.watched_on(camera)]
        hazards = {n: columns[n] for n in watched if np.isfinite(columns[n]).all()}
        params = DetectorParams.from_settings(settings.detector)
        capacity = settings.detector.max_references
        references = ReferenceSet(capacity)
        references.extend(embeddings[:: max(1, len(embeddings) // capacity)])
        state = CameraNormal(
            classes=calibrate(
                hazards,
                times,
                params.evidence,
                # Each class its share, whether or not all could be scored.
                settings.detector.false_alarms_per_day * len(hazards) / max(len(watched), 1),
            ),
            references=references,
            source="calibrated",
            calibrated_s=float(len(embeddings) / fps),
            calibrated_at=time.time(),
            definitions={k: v for k, v in _definitions(bank).items() if k in hazards},
        )
        _store_calibration(Repository(engine), camera, kind, state)
        log.info(
            "camera %s calibrated: %d class band(s), %d reference(s)",
            camera,
            len(state.classes),
            len(references),
        )
        return state
    finally:
        engine.dispose()
