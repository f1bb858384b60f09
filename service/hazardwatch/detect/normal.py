"""What normal looks like on one camera: per-class score bands and normal-reference embeddings.

A `CameraNormal` is the detector's memory of a camera, kept in the database across restarts:

- `classes`: per hazard class, the band of smoothed class probability seen on normal
  footage (`low` and `high` quantiles, `level` the median). The detector's adaptive
  baseline starts inside this band and is never allowed to leave it (plus
  `detector.normal_margin`), so a hazard in view at start, or one that builds up slowly,
  cannot be learned as normal. It comes from `hazardwatch calibrate` on normal footage,
  or, for a camera never calibrated, from the prior in the prompt bank (`normal:` per
  class).
- `baselines`: where each class's adaptive baseline stood when the state was saved, so a
  restart carries on where it left off.
- `checkpoint`: per class, the detector's whole running state when the state was saved
  (detect/channel.py): its decision statistic and the event it was in, so the run or
  events instance that takes the camera next goes on with them.
- `references`: up to `max_references` L2-normalised CLIP image embeddings of normal
  frames (seed 002's normal references). A frame whose embedding is this close to one of
  them (`detector.reference_match`) is an already-known normal sight; false-alarm
  feedback adds the event's peak frame here.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from hazardwatch.detect.evidence import MIN_NOISE, EvidenceParams, logit
from hazardwatch.detect.thresholds import Z95, band_of, fit_class
from hazardwatch.errors import ConfigError
from hazardwatch.records import ClassNormal

FloatArray = npt.NDArray[np.float32]
STATE_VERSION = 1
# Two references closer than this are the same sight: the newer one replaces the older.
DUPLICATE_SIMILARITY = 0.995


def evidence_noise(band: ClassNormal) -> float:
    """The noise scale the detector divides by: the calibrated one, else (a threshold
    written by hand) one from the band's upper half."""
    if band.noise is not None:
        return band.noise
    return max((logit(band.high) - logit(band.level)) / Z95, MIN_NOISE)


@dataclass
class ReferenceSet:
    """A bounded set of L2-normalised image embeddings; near-duplicates are merged."""

    capacity: int = 32
    embeddings: FloatArray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    def similarity(self, embedding: npt.ArrayLike) -> float | None:
        """Best cosine similarity of one embedding with the references (None: none held)."""
        if not len(self):
            return None
        vector = _unit(np.asarray(embedding, np.float32).reshape(-1))
        if vector.shape[0] != self.embeddings.shape[1]:
            return None  # another model's embeddings: not comparable
        return float(np.max(self.embeddings @ vector))

    def add(self, embedding: npt.ArrayLike) -> bool:
        """Add one embedding; a near-duplicate replaces its twin, the oldest goes when full.

        Returns False when the embedding's size differs from the references' (another model).
        """
        vector = _unit(np.asarray(embedding, np.float32).reshape(-1))
        if len(self) and vector.shape[0] != self.embeddings.shape[1]:
            return False
        if len(self):
            sims = self.embeddings @ vector
            keep = sims < DUPLICATE_SIMILARITY
            rows = self.embeddings[keep]
        else:
            rows = np.zeros((0, vector.shape[0]), np.float32)
        rows = np.vstack([rows, vector[None, :]])[-self.capacity :]
        self.embeddings = np.ascontiguousarray(rows, np.float32)
        return True

    def extend(self, embeddings: Sequence[npt.ArrayLike] | FloatArray) -> None:
        for embedding in embeddings:
            self.add(embedding)

    def to_json(self) -> dict[str, Any]:
        data = np.ascontiguousarray(self.embeddings, np.float16)
        return {
            "dim": int(data.shape[1]) if data.size else 0,
            "float16": base64.b64encode(data.tobytes()).decode("ascii"),
        }

    @classmethod
    def from_json(cls, data: Any, capacity: int) -> ReferenceSet:
        out = cls(capacity)
        if not data:
            return out
        try:
            dim = int(data["dim"])
            raw = np.frombuffer(base64.b64decode(data["float16"]), np.float16)
        except (KeyError, TypeError, ValueError):
            raise ConfigError("references must be {dim, float16 (base64)}") from None
        if dim:
            if raw.size % dim:
                raise ConfigError(f"references: {raw.size} values do not split into rows of {dim}")
            out.extend(raw.reshape(-1, dim).astype(np.float32))
        return out


def encode_embedding(embedding: npt.ArrayLike) -> str:
    """One embedding as float16 base64 (how events store their peak frame's)."""
    data = np.ascontiguousarray(np.asarray(embedding, np.float32).reshape(-1), np.float16)
    return base64.b64encode(data.tobytes()).decode("ascii")


def decode_embedding(text: str) -> FloatArray:
    try:
        return np.frombuffer(base64.b64decode(text, validate=True), np.float16).astype(np.float32)
    except ValueError:
        raise ConfigError("an embedding must be float16 values in base64") from None


def _unit(vector: FloatArray) -> FloatArray:
    norm = float(np.linalg.norm(vector))
    return (vector / norm).astype(np.float32) if norm > 0 else vector.astype(np.float32)


@dataclass
class CameraNormal:
    """One camera's learned normal: class bands, adaptive baselines and normal references."""

    classes: dict[str, ClassNormal] = field(default_factory=dict)
    baselines: dict[str, float] = field(default_factory=dict)
    references: ReferenceSet = field(default_factory=ReferenceSet)
    source: str = "prior"  # prior | calibrated
    calibrated_s: float = 0.0  # seconds of normal footage the bands were learned from
    calibrated_at: float = 0.0  # when (epoch s): a running service never overwrites a newer one
    # Per class by example, the definition (`PromptClass.definition`) its band was learned
    # on: other examples, and the class is learned again.
    definitions: dict[str, str] = field(default_factory=dict)
    # Per class, the detector's running state (`Channel.checkpoint`): JSON-safe values.
    checkpoint: dict[str, dict[str, Any]] = field(default_factory=dict)

    def band(self, channel: str) -> ClassNormal | None:
        return self.classes.get(channel)

    @property
    def calibrated(self) -> bool:
        return self.source == "calibrated"

    def summary(self) -> dict[str, Any]:
        """What the API and the start-up log say of it: calibrated or not, when, on how
        much footage, and how many normal references (calibration plus false alarms)."""
        at = (
            datetime.fromtimestamp(self.calibrated_at, UTC).isoformat().replace("+00:00", "Z")
            if self.calibrated and self.calibrated_at
            else None
        )
        return {
            "calibrated": self.calibrated,
            "calibrated_at": at,
            "calibrated_s": round(self.calibrated_s, 1) if self.calibrated else None,
            "references": len(self.references),
        }

    def describe(self) -> str:
        summary = self.summary()
        if not self.calibrated:
            learned = f"; {len(self.references)} normal reference(s) from feedback"
            return "not calibrated: starts from the prompt bank's prior" + (
                learned if len(self.references) else ""
            )
        return (
            f"calibrated {summary['calibrated_at'] or 'at an unknown time'} on "
            f"{self.calibrated_s:.0f} s of footage, {len(self.references)} normal reference(s)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "source": self.source,
            "calibrated_s": self.calibrated_s,
            "calibrated_at": self.calibrated_at,
            "classes": {name: band.as_dict() for name, band in sorted(self.classes.items())},
            "baselines": {name: float(v) for name, v in sorted(self.baselines.items())},
            "references": self.references.to_json(),
            "definitions": dict(sorted(self.definitions.items())),
            "checkpoint": dict(sorted(self.checkpoint.items())),
        }

    @classmethod
    def from_json(cls, data: Any, max_references: int = 32) -> CameraNormal:
        if not isinstance(data, Mapping):
            raise ConfigError("a camera state must be a JSON object")
        version = data.get("version")
        if version != STATE_VERSION:
            raise ConfigError(
                f"camera state version {version!r} is not {STATE_VERSION}: calibrate again"
            )
        classes = {
            str(name): ClassNormal.from_mapping(band, f"class {name!r}")
            for name, band in (data.get("classes") or {}).items()
        }
        baselines: dict[str, float] = {}
        for name, value in (data.get("baselines") or {}).items():
            if isinstance(value, int | float) and math.isfinite(value):
                baselines[str(name)] = float(value)
        return cls(
            classes=classes,
            baselines=baselines,
            references=ReferenceSet.from_json(data.get("references"), max_references),
            source=str(data.get("source", "calibrated")),
            calibrated_s=float(data.get("calibrated_s", 0.0)),
            calibrated_at=float(data.get("calibrated_at", 0.0)),
            definitions={str(k): str(v) for k, v in (data.get("definitions") or {}).items()},
            # Checked when a detector takes it up (a bad one is dropped there, logged).
            checkpoint={
                str(k): dict(v)
                for k, v in (data.get("checkpoint") or {}).items()
                if isinstance(v, Mapping)
            }
            if isinstance(data.get("checkpoint"), Mapping)
            else {},
        )

    @classmethod
    def prior(cls, bank: Any, max_references: int = 32) -> CameraNormal:
        """The starting state of a camera never calibrated: the bank's `normal:` per class."""
        return cls(
            classes={c.name: c.normal for c in bank.classes if c.normal is not None},
            references=ReferenceSet(max_references),
        )


def calibrate(
    channels: Mapping[str, npt.ArrayLike] | Sequence[Mapping[str, npt.ArrayLike]],
    times: npt.ArrayLike | Sequence[npt.ArrayLike],
    params: EvidenceParams,
    false_alarms_per_day: float,
) -> dict[str, ClassNormal]:
    """Each class's band, noise and threshold from normal footage (`detect.thresholds`);
    the camera's false-alarm budget is shared equally among its classes.

    One mapping of channels with its times: one camera's calibration. A sequence of them
    with a sequence of times: several cameras pooled into a prior.
    """
    if isinstance(channels, Mapping):
        cameras: list[Mapping[str, npt.ArrayLike]] = [channels]
        clocks: list[npt.ArrayLike] = [times]  # type: ignore[list-item]
    else:
        cameras, clocks = list(channels), list(times)  # type: ignore[arg-type]
    names = sorted({name for camera in cameras for name in camera})
    if not names:
        return {}
    per_class = false_alarms_per_day / len(names)
    out = {}
    for name in names:
        runs = [(c[name], t) for c, t in zip(cameras, clocks, strict=True) if name in c]
        try:
            fit = fit_class(runs, params, per_class)
        except ValueError as exc:
            raise ConfigError(f"class {name}: {exc}") from None
        out[name] = ClassNormal(fit.low, fit.level, fit.high, fit.noise, fit.threshold, fit.burst)
    return out


def pool(cameras: Sequence[Mapping[str, npt.ArrayLike]]) -> dict[str, ClassNormal]:
    """Bands from several cameras' smoothed normal series, each camera weighing the same
    (`thresholds.band_of`): a camera never calibrated may sit where most others' did."""
    names = sorted({name for c in cameras for name in c})
    out = {}
    for name in names:
        runs = [c[name] for c in cameras if name in c and np.size(c[name])]
        if runs:
            out[name] = ClassNormal(*band_of(runs))
    return out
