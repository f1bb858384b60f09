"""What the detector stage holds for each camera (`CameraSlot`), and the small rules it
applies to one camera's frames: when its state is saved, which classes it watches, how
close a frame is to its normal references, and the snapshot of a peak."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from hazardwatch.detect.detector import TemporalDetector
from hazardwatch.detect.learning import Learning
from hazardwatch.detect.normal import CameraNormal
from hazardwatch.records import EventRecord, Image, ScoredFrame
from hazardwatch.scoring.bank import PromptBank

log = logging.getLogger(__name__)
NEVER = -1e18  # a camera not saved yet


@dataclass(eq=False)
class CameraSlot:
    """Everything the stage holds for one camera. A camera closed by a reload keeps its
    slot (its normal is saved, and it may come back); what it ran with is dropped."""

    normal: CameraNormal | None = None  # stored, learned or the prior; None until seen
    detector: TemporalDetector | None = None
    bank_version: str | None = None  # the bank `detector` was built for
    learning: Learning | None = None  # never calibrated: learning its normal online
    closed: bool = False  # removed by a reload: its queued frames are ignored
    last_t: float = 0.0  # the newest frame time
    # The newest stored score row (a restart): frames up to an interval after it give none.
    stored_until: datetime | None = None
    last_sample: dict[str, float] = field(default_factory=dict)  # class -> frame time
    saved_at: float = NEVER  # monotonic
    save_due: bool = False  # taught by feedback: save with the next frame
    # The hazard classes, and what defines each class by example, the detector was built for.
    hazards: frozenset[str] = frozenset()
    definitions: dict[str, str] = field(default_factory=dict)
    # Bank versions seen: version -> (first seen, last seen), frame time.
    versions: dict[str, tuple[float, float]] = field(default_factory=dict)

    def drop_detector(self) -> TemporalDetector | None:
        detector, self.detector, self.bank_version = self.detector, None, None
        return detector


def last_frames(
    records: Sequence[EventRecord], normals: Mapping[str, CameraNormal]
) -> dict[str, float]:
    """By uuid, the last frame time of each open event's camera in its saved checkpoint
    (the last one its owner saw; none where no checkpoint was saved)."""
    out: dict[str, float] = {}
    for record in records:
        normal = normals.get(record.camera)
        saved = normal.checkpoint.get(record.class_name) if normal is not None else None
        if saved is not None and isinstance(saved.get("t"), int | float):
            out[record.uuid] = float(saved["t"])
    return out


def save_phase(camera: str) -> float:
    """Where in the save interval a camera's saves fall, in [0, 1): fixed by its name."""
    return zlib.crc32(camera.encode()) / 2**32


def watched_classes(
    bank: PromptBank, camera: str, probabilities: dict[str, float]
) -> dict[str, float]:
    """The probabilities of the classes watched on `camera` (`cameras:` in the bank)."""
    scoped = [c.name for c in bank.classes if c.cameras and camera not in c.cameras]
    if not scoped:
        return probabilities
    return {name: p for name, p in probabilities.items() if name not in scoped}


def similarity(slot: CameraSlot, scored: ScoredFrame) -> float | None:
    """The frame's best cosine with its camera's normal references (None: it has none, or
    the frame no embedding). Here, not in the worker: the references live with the
    detector, and a worker on another machine never sees them."""
    if scored.embedding is None or slot.normal is None:
        return None
    return slot.normal.references.similarity(scored.embedding)


def snapshot(peak: ScoredFrame | None) -> Image | None:
    """The peak frame's pixels (a frame from a broker is decoded here, at its event only);
    an image that does not decode costs the snapshot, never the event."""
    if peak is None:
        return None
    try:
        return peak.gated.frame.image
    except ValueError as exc:
        log.warning("camera %s: no snapshot, the peak frame does not decode: %s",
                    peak.gated.frame.camera, exc)  # fmt: skip
        return None
