"""Frozen records that travel between pipeline stages and into storage."""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from hazardwatch.errors import ConfigError

if TYPE_CHECKING:
    from hazardwatch.scoring.bank import PromptBank

EventStatus = Literal["open", "closed", "interrupted"]
# What happened to an event, the one vocabulary from the detector to the writer, clips and
# MQTT; the alert payload's `type` (new, update, end) is the published webhook/MQTT
# contract, derived from it in one place (outputs/alerts.py).
EventKind = Literal["started", "updated", "ended"]
EVENT_KINDS: tuple[EventKind, ...] = ("started", "updated", "ended")
Severity = Literal["info", "warning", "critical"]
EVENT_STATUSES: tuple[EventStatus, ...] = ("open", "closed", "interrupted")
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")


def _require_aware(name: str, value: datetime | None) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(
            f"{name}={value.isoformat()} has no time zone; pass an aware datetime "
            "(e.g. datetime.now(UTC)) so it can be stored as UTC"
        )


Image = npt.NDArray[np.uint8]
Box = tuple[int, int, int, int]  # x, y, width, height in full-frame pixels


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """One decoded frame as it leaves a camera reader.

    `received_at` is the wall-clock instant (UTC seconds since the epoch) the reader got
    the frame: it crosses stages and machines, for the staleness check and latencies
    (monotonic time stays inside one process); `captured_at` is the frame's UTC time —
    wall clock for live streams, the reader's start time plus the media position for
    files, so offline runs keep real durations however fast they are decoded.
    """

    camera: str
    seq: int
    received_at: float
    captured_at: datetime
    # The pixels, or a function that decodes them on first use: a frame that crossed a
    # broker is decoded only where its pixels are needed (the events service needs them
    # only for an event's snapshot and clip, not for every frame it scores).
    pixels: Image | Callable[[], Image] = field(repr=False)

    @property
    def image(self) -> Image:
        pixels = self.pixels
        if callable(pixels):
            pixels = pixels()
            object.__setattr__(self, "pixels", pixels)  # decoded once, then kept
        return pixels

    @property
    def decoded(self) -> bool:
        return not callable(self.pixels)

    @property
    def timestamp(self) -> float:
        """Seconds since the epoch of `captured_at`: the detector's clock."""
        return self.captured_at.timestamp()


@dataclass(frozen=True, slots=True)
class MotionResult:
    """The motion gate's verdict on one frame."""

    motion: bool
    score: float  # largest changed region as a fraction of the frame
    box: Box | None  # bounding box of that region in full-frame pixels
    changed: float = 0.0  # fraction of pixels that changed at all
    lighting: bool = False  # suppressed as a global lighting change


@dataclass(frozen=True, slots=True, eq=False)
class GatedFrame:
    """A frame chosen for scoring, with why it was chosen."""

    frame: Frame
    motion: MotionResult
    reason: Literal["motion", "preroll", "postroll", "heartbeat"]
    snippet: int  # frames sampled from one motion episode share this id (0: heartbeat)
    # This frame's number among its camera's frames handed to the broker (1, 2, …; 0: not
    # numbered). The events service counts the gaps: frames lost on the way.
    handoff_seq: int = 0
    # The encoded image this frame crossed a broker as: the next hop passes it on as it
    # is instead of encoding the pixels again (CPU, and a second JPEG generation).
    wire_image: bytes | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class ClipLink:
    """A finished clip to record on its event (from the clip recorder)."""

    uuid: str
    clip_path: str  # relative to the media dir


@dataclass(frozen=True, slots=True)
class CameraStateRecord:
    """A camera's learned normal to store (`CameraNormal.to_json()` as text); the newest
    state of a camera replaces any older one still waiting in the spool."""

    camera: str
    state: str
    source: str
    references: int
    calibrated_at: float = 0.0  # a stored state calibrated later is not overwritten


Verdict = Literal["false_alarm", "confirmed"]
VERDICTS: tuple[Verdict, ...] = ("false_alarm", "confirmed")


@dataclass(frozen=True, slots=True)
class Weather:
    """Conditions at a camera's location when an event started (outputs/weather.py)."""

    code: int  # WMO weather code
    text: str  # its meaning: 61 -> "slight rain"
    temperature_c: float | None
    precipitation_mm: float | None
    wind_speed_kmh: float | None
    visibility_m: float | None  # not every weather model gives it
    observed_at: datetime  # the time the provider's values are for (UTC)

    def __post_init__(self) -> None:
        _require_aware("observed_at", self.observed_at)

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self)}
        data["observed_at"] = self.observed_at.isoformat().replace("+00:00", "Z")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Weather:
        return cls(**{**data, "observed_at": datetime.fromisoformat(data["observed_at"])})


@dataclass(frozen=True, slots=True)
class WeatherLink:
    """Weather that arrived after its event was first stored: attach it to the row."""

    uuid: str
    weather: Weather


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One hazard event as stored: written at start, on each new peak and at the end.

    `revision` grows with every write of the same uuid so a late replay of an older
    state never overwrites a newer one.
    """

    uuid: str
    camera: str
    class_name: str
    severity: Severity
    status: EventStatus
    started_at: datetime
    peak_at: datetime
    peak_score: float
    mean_score: float
    ended_at: datetime | None = None
    snapshot_path: str | None = None
    clip_path: str | None = None
    model_name: str = ""
    prompt_bank_version: str = ""
    revision: int = 0
    # The peak frame's CLIP image embedding (float16, base64): a false alarm teaches it.
    peak_embedding: str | None = None
    # Operator feedback (POST /api/v1/events/{id}/feedback); never written by the detector.
    verdict: Verdict | None = None
    verdict_note: str | None = None
    verdict_at: datetime | None = None
    verdict_by: str | None = None  # the API user who gave it
    # Conditions at the camera's location at the start (cameras with a location); may
    # arrive after the first write (WeatherLink).
    weather: Weather | None = None
    # What opened it: the detector's statistic and the threshold it reached (evidence rule:
    # z·s against the camera's calibrated threshold; offset rule: the excess and
    # enter_threshold). None for events stored before they were recorded.
    opened_statistic: float | None = None
    opened_threshold: float | None = None

    def __post_init__(self) -> None:
        _require_aware("started_at", self.started_at)
        _require_aware("peak_at", self.peak_at)
        _require_aware("ended_at", self.ended_at)
        if self.status not in EVENT_STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {EVENT_STATUSES}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r} is not one of {SEVERITIES}")

    def to_json(self) -> dict[str, Any]:
        """Every field, times as ISO 8601 (the spool stores events so)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in _EVENT_TIMES:
            if data[key] is not None:
                data[key] = data[key].isoformat()
        data["weather"] = self.weather.to_json() if self.weather is not None else None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EventRecord:
        data = dict(data)
        for key in _EVENT_TIMES:
            if data.get(key) is not None:
                data[key] = datetime.fromisoformat(data[key])
        if data.get("weather") is not None:
            data["weather"] = Weather.from_json(data["weather"])
        return cls(**data)


_EVENT_TIMES = ("started_at", "peak_at", "ended_at", "verdict_at")


@dataclass(frozen=True, slots=True)
class ScoreSample:
    """One point of the per-camera, per-class score series shown in Grafana."""

    camera: str
    ts: datetime
    class_name: str
    score: float
    signal: float | None = None  # the detector's decision value (hazard classes)

    def __post_init__(self) -> None:
        _require_aware("ts", self.ts)


@dataclass(frozen=True, slots=True, eq=False)
class ScoredFrame:
    """One frame's scores: class probabilities (the detector's channels) and raw similarities."""

    gated: GatedFrame
    probabilities: dict[str, float]
    prompt_similarities: npt.NDArray[np.float32]
    bank: PromptBank
    # The frame's L2-normalised CLIP image embedding (from the same forward pass); the
    # detector stage compares it with the camera's normal references.
    embedding: npt.NDArray[np.float32] | None = None

    def top_prompts(self, k: int = 3) -> list[tuple[str, float]]:
        order = np.argsort(self.prompt_similarities)[::-1][:k]
        return [(self.bank.prompts[i], float(self.prompt_similarities[i])) for i in order]


@dataclass(frozen=True, slots=True, eq=False)
class EventUpdate:
    """An event record to store, with the kind of change and the peak frame's image."""

    kind: EventKind
    record: EventRecord
    snapshot: Image | None
    latency_from: float | None  # wall-clock receive time of the frame that decided it
    # The first update of an event a previous run left open, continued by this one (kind
    # "updated": its start was stored and alerted by that run).
    resumed: bool = False

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"event kind {self.kind!r} is not one of {', '.join(EVENT_KINDS)}")


# --------------------------------------------------------------------------- search


@dataclass(frozen=True, slots=True)
class KeyframeRecord:
    """A frame kept for search (search/keyframes.py): its CLIP image embedding (float16
    bytes) and thumbnail (a JPEG in the media dir, written before the row that names it).
    `event_uuid`: the event whose peak it is, if any."""

    camera: str
    ts: datetime
    embedding: bytes = field(repr=False)
    thumbnail_path: str  # relative to the media dir
    thumbnail_bytes: int
    model_name: str
    event_uuid: str | None = None

    def __post_init__(self) -> None:
        _require_aware("ts", self.ts)

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["ts"] = self.ts.isoformat()
        data["embedding"] = base64.b64encode(self.embedding).decode("ascii")
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KeyframeRecord:
        return cls(
            **{
                **data,
                "ts": datetime.fromisoformat(data["ts"]),
                "embedding": base64.b64decode(data["embedding"]),
            }
        )


@dataclass(frozen=True, slots=True)
class KeyframeBatch:
    """Keyframes to store together (one insert); the spool keeps them as one item."""

    records: tuple[KeyframeRecord, ...]


@dataclass(frozen=True, slots=True, eq=False)
class KeyframeShot:
    """A keyframe with its thumbnail's JPEG, for the writer to put on disk first."""

    record: KeyframeRecord
    jpeg: bytes = field(repr=False)


# --------------------------------------------------------------------------- normal

# A class's normal band: its prior comes with the prompt bank (scoring), its calibration
# from the camera's footage (detect); the detector reads both.
CALIBRATION_QUANTILES = (0.05, 0.95)
OPTIONAL_KEYS = {"noise", "threshold", "burst"}


@dataclass(frozen=True, slots=True)
class ClassNormal:
    """A class's normal on one camera: the band of its smoothed probability, and what the
    detector's evidence is measured against (`detect.thresholds`).

    `noise`: the scale of the smoothed level's residual around its baseline (logit units);
    `threshold`: the evidence (z·s) at which an event opens, derived for the camera's
    false-alarm budget; `burst`: the burst z (one fast-smoothed observation, in the same
    noise units) that opens an event on its own. A class without a threshold (the bank's
    prior, a state calibrated before thresholds came from noise) is decided by the offset
    rule; one with a threshold but no burst limit (calibrated before there was one) has no
    burst path; one with a threshold but no noise (written by hand) takes its noise from
    the band (`detect.normal.evidence_noise`).
    """

    low: float
    level: float
    high: float
    noise: float | None = None
    threshold: float | None = None
    burst: float | None = None

    def __post_init__(self) -> None:
        values = (self.low, self.level, self.high)
        if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values):
            raise ConfigError(f"normal band {values} must hold numbers in 0..1")
        if not self.low <= self.level <= self.high:
            raise ConfigError(f"normal band needs low <= level <= high, got {values}")
        for name in ("noise", "threshold", "burst"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"normal {name} must be a number above 0, got {value}")

    @classmethod
    def of(cls, values: npt.ArrayLike) -> ClassNormal:
        """The band of a series of smoothed probabilities (5th percentile, median, 95th)."""
        x = np.asarray(values, np.float64)
        x = x[np.isfinite(x)]
        if x.size == 0:
            raise ConfigError("no finite scores to calibrate from")
        lo, hi = np.quantile(x, CALIBRATION_QUANTILES)
        return cls(float(lo), float(np.median(x)), float(hi))

    def as_dict(self) -> dict[str, float]:
        out = {"low": self.low, "level": self.level, "high": self.high}
        if self.noise is not None:
            out["noise"] = self.noise
        if self.threshold is not None:
            out["threshold"] = self.threshold
        if self.burst is not None:
            out["burst"] = self.burst
        return out

    @classmethod
    def from_mapping(cls, data: Any, where: str) -> ClassNormal:
        keys = {"low", "level", "high"}
        if not isinstance(data, Mapping) or not keys <= set(data) <= keys | OPTIONAL_KEYS:
            raise ConfigError(
                f"{where}: normal must be a mapping of low, level and high "
                "(and optionally noise, threshold and burst)"
            )
        try:
            values = (float(data["low"]), float(data["level"]), float(data["high"]))
            extra = {k: float(data[k]) for k in OPTIONAL_KEYS if data.get(k) is not None}
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: normal values must be numbers") from None
        try:
            return cls(*values, **extra)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None


# ---------------------------------------------------------------------------- users

# What an API user may do: a viewer sees; an operator also gives verdicts; an admin also
# changes what the API lets be changed (api/accounts.py).
Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")


# ---------------------------------------------------------------------------- status
#
# What the API, readiness and the metrics read of the cameras and the roles, the same in
# one process (status.LocalStatus, from the readers) and in the events role
# (handoff.status.StatusBoard, from what capture nodes and workers publish as JSON).


class CameraState(StrEnum):
    """A camera as an operator sees it: its reader's state, or one of three the reader
    does not have (stalled: streaming but no frame within `capture.stall_timeout_s`;
    invalid: its source does not parse, it never ran; unknown: its report is old news)."""

    CONNECTING = "connecting"
    STREAMING = "streaming"
    STALLED = "stalled"
    BACKING_OFF = "backing_off"
    ENDED = "ended"
    STOPPED = "stopped"
    INVALID = "invalid"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, value: object) -> CameraState:
        """A reported state; one this version does not know is `unknown`."""
        try:
            return cls(str(value))
        except ValueError:
            return cls.UNKNOWN


@dataclass(frozen=True, slots=True)
class RecordingStatus:
    """A camera's full-rate recorder: recording, restarting, …; restarts; its last error."""

    state: str
    restarts: int = 0
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class CameraStatus:
    """One camera's status (credentials already redacted from `last_error`)."""

    name: str
    kind: str | None
    state: CameraState
    fps: float = 0.0
    last_frame_age_s: float | None = None  # None before the first frame
    frames_read: int = 0
    reconnects: int = 0
    last_error: str | None = None
    recording: RecordingStatus | None = None  # None: the camera is not recorded
    node: str | None = None  # the capture node that reported it (distributed roles)
    status_age_s: float | None = None  # seconds since that node's report

    @property
    def delivering(self) -> bool:
        return self.state is CameraState.STREAMING

    def problem(self) -> str | None:
        """Why the camera keeps the service from being ready, or None when it does not
        (delivering, or ended as a file does)."""
        where = f" (capture node {self.node})" if self.node else ""
        if self.state is CameraState.INVALID:
            return f"camera {self.name}: invalid source, not running (see /api/v1/cameras){where}"
        if self.state in (CameraState.CONNECTING, CameraState.BACKING_OFF, CameraState.STALLED):
            return f"camera {self.name}: {self.state}{where}"
        return None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "state": self.state.value,
            "fps": self.fps,
            "last_frame_age_s": self.last_frame_age_s,
            "frames_read": self.frames_read,
            "reconnects": self.reconnects,
            "last_error": self.last_error,
            "recording": None,
        }
        if self.recording is not None:
            r = self.recording
            data["recording"] = {
                "state": r.state,
                "restarts": r.restarts,
                "last_error": r.last_error,
            }
        if self.node is not None:
            data["node"] = self.node
        if self.status_age_s is not None:
            data["status_age_s"] = self.status_age_s
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CameraStatus:
        """A capture node's report; a field missing or of the wrong type reads as absent
        (a node of another version must not take the status page down)."""
        recording = data.get("recording")
        return cls(
            name=str(data.get("name")),
            kind=_str_or_none(data.get("kind")),
            state=CameraState.parse(data.get("state")),
            fps=_number(data.get("fps")) or 0.0,
            last_frame_age_s=_number(data.get("last_frame_age_s")),
            frames_read=int(_number(data.get("frames_read")) or 0),
            reconnects=int(_number(data.get("reconnects")) or 0),
            last_error=_str_or_none(data.get("last_error")),
            recording=(
                RecordingStatus(
                    str(recording.get("state")),
                    int(_number(recording.get("restarts")) or 0),
                    _str_or_none(recording.get("last_error")),
                )
                if isinstance(recording, Mapping)
                else None
            ),
            node=_str_or_none(data.get("node")),
            status_age_s=_number(data.get("status_age_s")),
        )


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """A capture node or scoring worker as it reported itself (the distributed roles)."""

    role: Literal["capture", "worker"]
    node: str
    connected: bool = True  # to NATS
    cameras: tuple[str, ...] = ()  # capture: the cameras it reads
    encoder: str | None = None  # worker: the model it scores with
    frames_scored: int = 0  # worker
    running: bool = True  # worker: its scoring thread runs

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"role": self.role, "node": self.node, "connected": self.connected}
        if self.role == "capture":
            data["cameras"] = list(self.cameras)
        else:
            data |= {"encoder": self.encoder, "frames_scored": self.frames_scored,
                     "running": self.running}  # fmt: skip
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NodeStatus:
        cameras = data.get("cameras")
        return cls(
            role="worker" if data.get("role") == "worker" else "capture",
            node=str(data.get("node")),
            connected=bool(data.get("connected", True)),
            cameras=tuple(map(str, cameras)) if isinstance(cameras, list) else (),
            encoder=_str_or_none(data.get("encoder")),
            frames_scored=int(_number(data.get("frames_scored")) or 0),
            running=bool(data.get("running", True)),
        )


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
