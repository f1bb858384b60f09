"""The configuration schema: every section a pydantic model with unknown keys forbidden
and every field documented with its bounds. Secrets (database URL, camera URLs, tokens,
passwords) are `SecretStr`, so they never appear in `repr`, logs or `hazardwatch config
check`. Loading (YAML, `${ENV}` references, HAZARDWATCH_… variables) is `loading.py`;
turning a validation error into lines an operator can act on is `problems.py`.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from hazardwatch.records import Role
from hazardwatch.redact import ambiguous_credentials, redact_hook_url, redact_url

ENV_PREFIX = "HAZARDWATCH_"
SOURCE_SCHEMES = ("rtsp", "rtsps", "http", "https", "file")
_Secret = TypeVar("_Secret", bound=SecretStr | None)


class SecretUrl(SecretStr):
    """A URL that may carry credentials: shown with its password masked, never in full."""

    def _display(self) -> str:
        return redact_url(self.get_secret_value())


class SecretServerUrls(SecretStr):
    """One URL or a comma-separated list (NATS servers): each shown with its password
    masked and its host kept, as a database URL is."""

    def _display(self) -> str:
        return ",".join(redact_url(part.strip()) for part in self.get_secret_value().split(","))


class SecretHookUrl(SecretStr):
    """A webhook URL: its path and query may be the secret; shown as scheme://host/***."""

    def _display(self) -> str:
        return redact_hook_url(self.get_secret_value())


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost (no name is resolved): where the API may listen
    without a token, and where a webhook or MQTT broker needs no TLS to stay private."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _unambiguous(value: _Secret) -> _Secret:
    """A URL setting whose credentials are not percent-encoded is refused (its password
    would otherwise be read partly as a host and reach logs and DNS)."""
    if value is not None:
        problem = ambiguous_credentials(value.get_secret_value(), any_scheme=True)
        if problem is not None:
            raise ValueError(problem)
    return value


class Section(BaseModel):
    """Base of every configuration section: unknown keys are an error, not a silent typo."""

    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True)


# --------------------------------------------------------------------------- cameras


Point = tuple[float, float]


class Location(Section):
    """Where a camera stands (WGS 84), for the weather at its events."""

    lat: float = Field(ge=-90, le=90, description="Latitude in degrees, -90..90.")
    lon: float = Field(ge=-180, le=180, description="Longitude in degrees, -180..180.")


class CameraSettings(Section):
    name: str = Field(
        description="Unique camera name, used in metrics labels, topics and the database. "
        "1-64 characters: letters, digits, '_', '-', '.'.",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$",
    )
    url: SecretUrl = Field(
        description="Source: rtsp://, rtsps://, http(s):// (MJPEG), file:///path or a plain "
        "file path, or webcam:N for a local webcam index. Credentials may be written as "
        "${ENV_VAR} so they stay out of the file.",
    )
    enabled: bool = Field(True, description="Read this camera at all.")
    fps_limit: float | None = Field(
        None,
        gt=0,
        le=120,
        description="Drop frames above this rate before any processing (0 < fps <= 120); "
        "null keeps every frame.",
    )
    rtsp_transport: Literal["tcp", "udp"] = Field(
        "tcp", description="RTSP transport; TCP survives lossy networks without smearing."
    )
    loop: bool = Field(False, description="Loop a video file forever (demos); ignored for streams.")
    record: bool = Field(
        False,
        description="Record the stream at full rate into segments (a second RTSP session, "
        "ffmpeg -c copy, no re-encoding) and cut event clips from them (see recording:). "
        "RTSP only; other sources keep clips made from the scored frames.",
    )
    location: Location | None = Field(
        None,
        description="{lat, lon} of the camera: events get the weather there (see weather:); "
        "null: no weather.",
    )
    masks: list[list[Point]] = Field(
        default_factory=list,
        description="Polygons ignored by the motion gate, as [x, y] points normalised to "
        "0..1 of the frame width and height; at least 3 points each.",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretUrl) -> SecretUrl:
        raw = value.get_secret_value().strip()
        if not raw:
            raise ValueError("must not be empty; give rtsp://…, a file path or webcam:N")
        if "://" in raw:
            scheme = raw.split("://", 1)[0].lower()
            if scheme not in SOURCE_SCHEMES:
                raise ValueError(
                    f"scheme {scheme!r} is not supported; use one of {', '.join(SOURCE_SCHEMES)}"
                )
        elif raw.startswith("webcam:") and not raw.removeprefix("webcam:").isdigit():
            raise ValueError("webcam sources are written webcam:N with N a device index")
        return SecretUrl(raw)

    @field_validator("masks")
    @classmethod
    def _check_masks(cls, masks: list[list[Point]]) -> list[list[Point]]:
        for i, polygon in enumerate(masks):
            if len(polygon) < 3:
                raise ValueError(f"mask {i} has {len(polygon)} points; a polygon needs at least 3")
            for x, y in polygon:
                if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                    raise ValueError(
                        f"mask {i} point ({x}, {y}) is outside 0..1; "
                        "mask points are fractions of the frame width and height"
                    )
        return masks


class CaptureSettings(Section):
    open_timeout_s: float = Field(
        10.0, gt=0, le=120, description="Give up opening a source after this many seconds."
    )
    read_timeout_s: float = Field(
        5.0, gt=0, le=120, description="Give up a single blocking read after this many seconds."
    )
    stall_timeout_s: float = Field(
        10.0,
        gt=0,
        le=600,
        description="No frame for this long means the stream is lost; reconnect.",
    )
    backoff_initial_s: float = Field(1.0, gt=0, le=60, description="First reconnect delay.")
    backoff_max_s: float = Field(
        60.0, gt=0, le=3600, description="Reconnect delay cap (exponential with jitter)."
    )

    @model_validator(mode="after")
    def _check_backoff(self) -> CaptureSettings:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be >= backoff_initial_s")
        return self


# --------------------------------------------------------------------------- motion


class MotionSettings(Section):
    threshold: int = Field(
        25,
        ge=1,
        le=255,
        description="Grey-level difference (1-255) that counts a pixel as changed.",
    )
    min_area: float = Field(
        0.002,
        gt=0,
        le=1,
        description="Largest changed region must cover at least this fraction of the frame.",
    )
    downscale_width: int = Field(
        320, ge=64, le=1920, description="Width of the grey copy the gate works on."
    )
    blur_kernel: int = Field(
        5, ge=1, le=51, description="Gaussian blur kernel (odd), in pixels of the downscaled copy."
    )
    dilate_iterations: int = Field(
        3, ge=0, le=10, description="Dilations that join nearby changed pixels."
    )
    lighting_guard: float = Field(
        0.6,
        gt=0,
        le=1,
        description="When more than this fraction of the frame changes at once it is a "
        "lighting change, not motion.",
    )
    preroll_s: float = Field(
        2.0, ge=0, le=30, description="Seconds of frames kept before motion starts."
    )
    postroll_s: float = Field(
        2.0, ge=0, le=60, description="Keep sampling this long after motion stops."
    )
    sample_fps: float = Field(
        3.0, gt=0, le=30, description="Frames per second sent to scoring while motion lasts."
    )
    heartbeat_s: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="Score one frame this often even without motion (stationary hazards); "
        "0 turns it off.",
    )

    @field_validator("blur_kernel")
    @classmethod
    def _odd_kernel(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"must be odd (Gaussian kernels have a centre); try {value + 1}")
        return value


# --------------------------------------------------------------------------- scoring


class ScoringSettings(Section):
    model: str = Field(
        "ViT-B/32",
        min_length=1,
        description="CLIP model name (ViT-B/32, ViT-B/16, ViT-L/14, RN50, …) or a local "
        "weights file (.pt: OpenAI TorchScript archive or a state dict).",
    )
    download_dir: Path = Field(
        Path("~/.cache/clip"), description="Where named models are downloaded to and looked up."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto picks CUDA when available."
    )
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="auto: fp16 on CUDA, bf16 on CPUs that support it, else fp32."
    )
    cpu_fast_path: bool = Field(
        True,
        description="On the CPU, run ViT image encoders batch-first with weights cast once and "
        "oneDNN-prepacked linears (checked against clip's own forward at load; ViT-B/32 "
        "scored 1.3–1.4× faster in bf16, 2.1× in fp32). false: clip's own forward.",
    )
    batch_size: int = Field(16, ge=1, le=512, description="Largest batch of frames scored at once.")
    max_batch_wait_ms: float = Field(
        50.0, ge=0, le=5000, description="Wait at most this long to fill a batch across cameras."
    )
    queue_size: int = Field(
        256,
        ge=1,
        le=100_000,
        description="Frames waiting for scoring; beyond it the oldest are dropped.",
    )
    motion_crop: bool = Field(
        False, description="Also score a second view cropped around the motion box."
    )
    max_frame_age_s: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="Skip frames that waited longer than this for scoring (counted as "
        "dropped, reason stale), so an overloaded worker stays this close to live; 0: never.",
    )


class PromptSettings(Section):
    path: Path | None = Field(
        None, description="Prompt bank YAML; null uses the bank shipped in config/prompts.yaml."
    )
    reload: bool = Field(
        True, description="Reload the bank when its file changes (bad edits keep the old bank)."
    )


# --------------------------------------------------------------------------- detection


class DetectorSettings(Section):
    false_alarms_per_day: float = Field(
        1.0,
        gt=0,
        le=1000,
        description="The false-alarm budget per camera: each class's threshold is derived from "
        "the camera's calibrated noise so that its normal footage raises at most this many "
        "events a day, shared among the classes (docs/detection.md).",
    )
    rule: Literal["evidence", "offset"] = Field(
        "evidence",
        description="evidence: accumulated excess over the camera's own noise, thresholds from "
        "false_alarms_per_day; offset: the older fixed enter/exit offsets over a baseline.",
    )
    smoothing_s: float = Field(
        1.0, ge=0, le=60, description="Time constant of the exponential score smoothing (0: none)."
    )
    burst_smoothing_s: float = Field(
        0.25,
        ge=0,
        le=10,
        description="Time constant of the fast smoothing behind the burst limit: a sight this "
        "far outside the camera's normal opens an event at once (docs/detection.md).",
    )
    reference_z: float = Field(
        2.0,
        ge=0,
        le=20,
        description="Evidence accumulates while the excess is above this many noise units "
        "(CUSUM reference); below it, it drains.",
    )
    max_gap_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="One sample after a gap counts as evidence for at most this long.",
    )
    enter_threshold: float = Field(
        0.2,
        ge=-1,
        le=1,
        description="rule offset: an event starts when the smoothed class probability rises "
        "this far above the camera's baseline (above 0 when the baseline is off).",
    )
    exit_threshold: float = Field(
        0.15,
        ge=-1,
        le=1,
        description="rule offset: the event ends when it falls below this (<= enter).",
    )
    min_duration_s: float = Field(
        1.0,
        ge=0,
        le=600,
        description="rule offset: score must stay above enter this long before an event starts.",
    )
    cooldown_s: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="After an event ends, the same class on the same camera waits this long.",
    )
    max_event_s: float = Field(
        600.0,
        gt=0,
        le=86_400,
        description="An event open this long is ended (and may start again).",
    )
    baseline: bool = Field(
        True,
        description="rule offset: subtract a per-camera, per-class running baseline learned only "
        "while no "
        "event is open (fixed cameras see the same scene all day).",
    )
    baseline_s: float = Field(
        60.0, gt=0, le=86_400, description="Time constant of the baseline's running mean."
    )
    normal_margin: float = Field(
        0.1,
        ge=0,
        le=1,
        description="rule offset: how far the baseline may leave the camera's normal band "
        "(calibrated, or the prompt bank's prior): above it, a level is never learned as normal.",
    )
    reference_match: float = Field(
        0.95,
        gt=0,
        le=1,
        description="A frame whose CLIP image embedding has at least this cosine with one of "
        "the camera's normal references (calibration, false-alarm feedback) counts as normal.",
    )
    learning_s: float = Field(
        1800.0,
        ge=0,
        le=7 * 86_400,
        description="A camera never calibrated learns its normal online for this many seconds "
        "of normal footage (alerting meanwhile only on what the prompt bank's prior calls "
        "extreme), then calibrates itself and stores the state; 0: never (calibrate by hand).",
    )
    max_references: int = Field(
        32,
        ge=1,
        le=1024,
        description="Normal references kept per camera; near-duplicates merge, the oldest go.",
    )

    @model_validator(mode="after")
    def _check_hysteresis(self) -> DetectorSettings:
        if self.exit_threshold > self.enter_threshold:
            raise ValueError(
                f"exit_threshold ({self.exit_threshold}) must be <= enter_threshold "
                f"({self.enter_threshold}) or events would flap"
            )
        return self


# --------------------------------------------------------------------------- outputs


class StorageSettings(Section):
    data_dir: Path = Field(
        Path("data"), description="Directory for the embedded SQLite database and spool."
    )
    database_url: SecretUrl | None = Field(
        None,
        description="SQLAlchemy URL, e.g. mysql+pymysql://user:${DB_PASSWORD}@host/hazardwatch; "
        "null uses SQLite at <data_dir>/hazardwatch.db.",
    )
    write_scores: bool = Field(True, description="Store the per-class score series for dashboards.")

    @field_validator("database_url")
    @classmethod
    def _unambiguous_database_url(cls, value: SecretUrl | None) -> SecretUrl | None:
        return _unambiguous(value)

    score_interval_s: float = Field(
        1.0,
        ge=0,
        le=3600,
        description="Store at most one score row per camera and class this often.",
    )

    writer_backlog: int = Field(
        10_000,
        ge=100,
        le=10_000_000,
        description="Writes queued for the database at most (a database slow but up). Beyond "
        "it, score samples are dropped (hazardwatch_writer_dropped_total) and events, clips, "
        "states and weather wait for room, which slows scoring (or the broker's acks) instead "
        "of growing memory.",
    )
    spool_max_items: int = Field(
        200_000,
        ge=100,
        le=100_000_000,
        description="Writes kept in the local spool while the database is down; beyond it the "
        "oldest score samples, then keyframes, then the oldest events, are dropped (and logged).",
    )

    def resolved_url(self) -> str:
        """The database URL to connect to (the secret value, never to be printed)."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{(self.data_dir / 'hazardwatch.db').as_posix()}"


class MediaSettings(Section):
    dir: Path | None = Field(None, description="Snapshots and clips; null uses <data_dir>/media.")
    retention_days: float = Field(
        14.0, ge=0, le=3650, description="Delete media older than this (0: keep)."
    )
    max_size_gb: float = Field(
        10.0, ge=0, le=100_000, description="Delete oldest media beyond this total (0: no cap)."
    )
    snapshot_quality: int = Field(85, ge=1, le=100, description="JPEG quality of snapshots.")
    clips: bool = Field(True, description="Write an MP4 clip (pre-roll + event) per event.")
    clip_max_width: int = Field(
        1280, ge=160, le=7680, description="Clips wider than this are scaled down."
    )
    retention_interval_s: float = Field(
        300.0, ge=1, le=86_400, description="How often retention sweeps the media directory."
    )


class SearchSettings(Section):
    """Keyframes kept for search in words and by example (issue 26, docs/search.md)."""

    enabled: bool = Field(
        True, description="Keep keyframes (embedding + thumbnail) and answer /api/v1/search."
    )
    keyframe_interval_s: float = Field(
        10.0,
        ge=1,
        le=3600,
        description="At most one keyframe per camera this often while it has motion (and "
        "one per event, its peak). At 10 s a camera in motion all day keeps 8,640 a day: "
        "31-61 MB of thumbnails (measured on the sample clips) and 12 MB of database "
        "(docs/search.md).",
    )
    thumbnail_width: int = Field(
        320,
        ge=64,
        le=640,
        description="Width of a keyframe's thumbnail JPEG in pixels: what search shows and "
        "what `hazardwatch reindex` embeds again after a model change.",
    )
    thumbnail_quality: int = Field(70, ge=1, le=100, description="JPEG quality of thumbnails.")


class RecordingSettings(Section):
    """Full-rate recording of the cameras with `record: true`."""

    segment_s: float = Field(
        2.0,
        ge=1,
        le=60,
        description="Target segment length; segments are cut at the camera's keyframes, so a "
        "clip reaches up to one segment (or keyframe interval) beyond the event.",
    )
    keep_s: float = Field(
        3600.0,
        ge=120,
        le=30 * 86_400,
        description="Delete segments older than this; event clips cut from them stay under "
        "media retention. At least 120 s, so a clip is cut before its segments go.",
    )
    postroll_s: float = Field(
        5.0, ge=0, le=300, description="Seconds after an event's end kept in its clip."
    )
    max_clip_s: float = Field(
        600.0, ge=10, le=86_400, description="A longer event's clip stops after this long."
    )
    ffmpeg: str = Field("ffmpeg", description="The ffmpeg program (a name on PATH or a path).")


class WeatherSettings(Section):
    """Weather at each event, for every camera with a location (seed 003)."""

    enabled: bool = Field(True, description="Attach weather to events of cameras with a location.")
    base_url: str = Field(
        "https://api.open-meteo.com/v1/forecast",
        description="An Open-Meteo forecast endpoint (no API key); point it at an "
        "on-premise mirror where the service has no internet.",
        pattern=r"^https?://",
    )
    timeout_s: float = Field(5.0, gt=0, le=60, description="Give up one request after this.")
    cache_s: float = Field(
        600.0, ge=0, le=86_400, description="Reuse a location's conditions this long."
    )
    failures_to_open: int = Field(
        3,
        ge=1,
        le=100,
        description="Consecutive failures that open the circuit breaker (no requests).",
    )
    open_s: float = Field(
        300.0, gt=0, le=86_400, description="How long the open breaker waits before one trial."
    )


class BrokerSettings(Section):
    """NATS JetStream for the distributed roles (`hazardwatch capture | worker | events`).
    Unset `url`: `hazardwatch run` is one process and no broker is used."""

    url: SecretServerUrls | None = Field(
        None,
        description="nats://[user:password@]host:4222 (tls:// for TLS); set it (or "
        "HAZARDWATCH_BROKER__URL) to run the roles. Its password is never logged.",
    )

    @field_validator("url")
    @classmethod
    def _unambiguous_broker_url(cls, value: SecretServerUrls | None) -> SecretServerUrls | None:
        if value is not None:
            for part in value.get_secret_value().split(","):
                _unambiguous(SecretStr(part.strip()))
        return value

    creds_file: Path | None = Field(None, description="A NATS .creds file (JWT + NKey).")
    tls_ca_file: Path | None = Field(None, description="CA bundle to verify the server.")
    tls_cert_file: Path | None = Field(None, description="Client certificate (mutual TLS).")
    tls_key_file: Path | None = Field(None, description="Client key (mutual TLS).")
    ack_wait_s: float = Field(
        2.0,
        gt=0,
        le=600,
        description="A frame a worker took and did not ack within this goes to another "
        "worker; keep it well below scoring.max_frame_age_s.",
    )
    max_ack_pending: int = Field(
        256, ge=1, le=100_000, description="Frames all workers together may hold unacked."
    )
    max_deliver: int = Field(3, ge=1, le=100, description="Attempts per frame.")
    reorder_window_s: float = Field(
        0.5,
        ge=0,
        le=30,
        description="The events service holds a camera's scores at most this long to put "
        "frames that workers finished out of order back into capture order; only where "
        "one before them is missing (frames numbered in sequence leave at once).",
    )
    jpeg_quality: int = Field(85, ge=1, le=100, description="JPEG quality of frames sent.")
    image_format: Literal["jpeg", "png"] = Field(
        "jpeg", description="jpeg (small) or png (lossless, several times larger)."
    )
    max_width: int = Field(
        1280, ge=160, le=7680, description="Frames wider than this are scaled down to send."
    )
    scores_max_age_s: float = Field(
        3600.0,
        ge=60,
        le=7 * 86_400,
        description="Scores stay in the broker this long for a restarting events service.",
    )
    partitions: int = Field(
        1,
        ge=1,
        le=256,
        description="Cameras are split by a hash of their name into this many partitions, "
        "each consumed by one events instance at a time; every `hazardwatch events` takes a "
        "fair share by itself. Fixed per deployment: the same in every role; a role with "
        "another count than the scores stream's is refused until that stream is drained "
        "and its events instances stopped, then the stream is repartitioned.",
    )


class UserSettings(Section):
    name: str = Field(
        description="Shown beside every verdict the user gives. 1-64 characters: letters, "
        "digits, '_', '-', '.', '@'.",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,63}$",
    )
    role: Role = Field(
        description="viewer: sees events, media and cameras; operator: also gives verdicts; "
        "admin: also changes what the API lets be changed."
    )
    password_hash: SecretStr | None = Field(
        None,
        description="For the review page's login form: an scrypt hash made by "
        "`hazardwatch user hash-password` (never the password itself).",
    )
    token: SecretStr | None = Field(
        None,
        description="A bearer token for programs acting as this user (at least 16 "
        "characters; e.g. `openssl rand -hex 32`).",
    )

    @field_validator("password_hash")
    @classmethod
    def _check_hash(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not PASSWORD_HASH.fullmatch(value.get_secret_value()):
            raise ValueError(
                "not a password hash (scrypt$N$r$p$salt$hash): make one with `hazardwatch "
                "user hash-password`, and never put the password itself here"
            )
        return value

    @field_validator("token")
    @classmethod
    def _check_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("a user's token needs at least 16 characters")
        return value


PASSWORD_HASH = re.compile(r"scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*")


class ApiSettings(Section):
    enabled: bool = Field(True, description="Serve the HTTP API and /metrics while running.")
    host: str = Field(
        "127.0.0.1", description="Bind address; 0.0.0.0 exposes the API to the network."
    )
    port: int = Field(8080, ge=1, le=65535, description="HTTP port of the API and /metrics.")
    token: SecretStr | None = Field(
        None,
        description="Bearer token required on everything but health checks; it acts as an "
        "admin named api-token (users: below).",
    )
    users: list[UserSettings] = Field(
        default_factory=list,
        description="Who may use the API and the review page, each with a role; with "
        "users or a token set, every request but the health checks must say who it is.",
    )
    session_ttl_s: float = Field(
        12 * 3600,
        gt=60,
        le=30 * 86_400,
        description="How long a review-page login lasts (logout ends it sooner).",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Allowed CORS origins; empty turns CORS off."
    )
    max_upload_mb: float = Field(10.0, gt=0, le=1024, description="Largest accepted upload.")
    public_url: str | None = Field(
        None,
        description="Base URL that alert receivers use to reach this API (snapshot links in "
        "webhooks and MQTT), e.g. https://hazardwatch.example.com; null: no links.",
        pattern=r"^https?://[^\s]+$",
    )
    media_url_ttl_s: float = Field(
        7 * 86_400,
        gt=0,
        le=366 * 86_400,
        description="With a token: how long signed snapshot and clip links (alerts, the "
        "events list) stay valid; they need no Authorization header.",
    )
    docs_public: bool = Field(
        False,
        description="With a token: serve /docs, /redoc and /openapi.json without it (they "
        "describe the API and hold no data), so a browser can open them.",
    )
    mask_threshold: float = Field(
        0.5,
        ge=0,
        le=1,
        description="POST /api/v1/score?mask=1: a pixel gets the hazard class whose patch "
        "evidence (interpolated class probability) is highest there, when it reaches this; "
        "the request's `threshold` overrides it.",
    )
    mask_grid: int = Field(
        4,
        ge=2,
        le=16,
        description="Cells per side of the crop grid behind masks and the heatmap overlay; "
        "finer grids follow objects closer and cost (grid-1)²+1 forward passes.",
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="A connection whose request headers have not all arrived this long "
        "after it opened (or after its previous response) is closed: slow clients cannot "
        "hold connections open.",
    )
    request_timeout_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="The whole request, body included, must arrive within this.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names the API answers to (the Host header); others get a 400, so a "
        "web page that rebinds its own name to this address cannot read media or post "
        "verdicts. Empty: localhost, 127.0.0.1, ::1, api.host and public_url's host. '*': any.",
    )
    metrics_public: bool = Field(
        False,
        description="With a token: serve /metrics without it, for a Prometheus on a trusted "
        "network that cannot send one (labels are camera and class names only).",
    )
    max_connections: int = Field(
        256,
        ge=8,
        le=100_000,
        description="Open API connections at most (also kept below the process's file "
        "descriptor limit, with a reserve for cameras, media, the database and alerts); "
        "beyond it the connection idle longest waiting for a request is closed first.",
    )

    @model_validator(mode="after")
    def _unique_user_names(self) -> ApiSettings:
        names = [u.name for u in self.users]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"api.users: the name(s) {', '.join(twice)} appear more than once")
        return self

    @property
    def authenticated(self) -> bool:
        """Whether every request must say who it is (a token or a user is configured)."""
        return self.token is not None or bool(self.users)

    def exposure(self) -> str | None:
        """Why this API must not start as configured, or None: beyond loopback without a
        token, anyone on the network could read every snapshot and post verdicts that
        silence a sight for good."""
        if self.enabled and not self.authenticated and not is_loopback(self.host):
            return (
                f"api.host is {self.host}, reachable from the network, and api.token is unset: "
                "set api.token (or HAZARDWATCH_API__TOKEN; e.g. `openssl rand -hex 32`), or "
                "bind the API to 127.0.0.1"
            )
        return None

    def hosts(self) -> frozenset[str] | None:
        """The Host names answered to (lower case, no port); None: any."""
        if "*" in self.allowed_hosts:
            return None
        names = {h.lower() for h in self.allowed_hosts}
        if not self.allowed_hosts:
            names |= {"localhost", "127.0.0.1", "::1"}
            if self.host not in ("0.0.0.0", "::", ""):
                names.add(self.host.lower())
            if self.public_url:
                public = urlsplit(self.public_url).hostname
                if public:
                    names.add(public.lower())
        return frozenset(names)


class WebhookSettings(Section):
    url: SecretHookUrl | None = Field(
        None,
        description="POST alerts here; null disables webhooks. Shown as scheme://host/*** "
        "(hooks often carry their secret in the path).",
    )
    secret: SecretStr | None = Field(None, description="HMAC-SHA256 key for the signature header.")
    timeout_s: float = Field(5.0, gt=0, le=120, description="Per-request timeout.")
    retries: int = Field(
        5, ge=0, le=100, description="Retries with exponential backoff before giving up."
    )

    @field_validator("url")
    @classmethod
    def _unambiguous_hook_url(cls, value: SecretHookUrl | None) -> SecretHookUrl | None:
        return _unambiguous(value)


class MqttSettings(Section):
    host: str | None = Field(None, description="Broker host; null disables MQTT.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port.")
    username: str | None = Field(None, description="Broker user name.")
    password: SecretStr | None = Field(None, description="Broker password.")
    topic_prefix: str = Field("hazardwatch", min_length=1, description="Prefix of every topic.")
    tls: bool = Field(
        False, description="Connect over TLS (port 8883 as a rule), verifying the broker."
    )
    tls_ca_file: Path | None = Field(
        None, description="CA bundle to verify the broker (default: the system's)."
    )
    tls_cert_file: Path | None = Field(None, description="Client certificate (mutual TLS).")
    tls_key_file: Path | None = Field(None, description="Client key (mutual TLS).")

    @model_validator(mode="after")
    def _tls_files_need_tls(self) -> MqttSettings:
        files = (self.tls_ca_file, self.tls_cert_file, self.tls_key_file)
        if any(f is not None for f in files) and not self.tls:
            raise ValueError("tls_ca_file, tls_cert_file and tls_key_file need tls: true")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("give both tls_cert_file and tls_key_file, or neither")
        for f in files:
            if f is not None and not f.is_file():
                raise ValueError(f"{f} does not exist or is not a file")
        return self


class AlertSettings(Section):
    min_severity: Literal["info", "warning", "critical"] = Field(
        "warning", description="Alert on events of at least this severity."
    )
    cooldown_s: float = Field(
        60.0, ge=0, le=86_400, description="At most one alert per camera and class this often."
    )
    update_interval_s: float = Field(
        10.0, ge=0, le=3600, description="At most one 'update' alert per event this often."
    )
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)


class MetricsSettings(Section):
    enabled: bool = Field(True, description="Serve Prometheus metrics at /metrics on the API port.")


# --------------------------------------------------------------------------- root


class Settings(BaseSettings):
    """The whole configuration. Precedence: environment > YAML file > defaults."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
        frozen=True,
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log verbosity."
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="text: one line a record, UTC ISO 8601 times; json: one JSON object a "
        "line (ts, level, logger, message, exception) for log collectors.",
    )
    cameras: list[CameraSettings] = Field(default_factory=list, description="Camera sources.")
    capture: CaptureSettings = Field(default_factory=CaptureSettings)
    motion: MotionSettings = Field(default_factory=MotionSettings)
    scoring: ScoringSettings = Field(default_factory=ScoringSettings)
    prompts: PromptSettings = Field(default_factory=PromptSettings)
    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    media: MediaSettings = Field(default_factory=MediaSettings)
    recording: RecordingSettings = Field(default_factory=RecordingSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    weather: WeatherSettings = Field(default_factory=WeatherSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)

    @model_validator(mode="after")
    def _ack_wait_below_frame_age(self) -> Settings:
        age = self.scoring.max_frame_age_s
        if age and self.broker.ack_wait_s >= age:
            raise ValueError(
                f"broker.ack_wait_s ({self.broker.ack_wait_s:g}) must be below "
                f"scoring.max_frame_age_s ({age:g}), or a dead worker's frames expire before "
                "another worker gets them"
            )
        return self

    @model_validator(mode="after")
    def _unique_camera_names(self) -> Settings:
        seen: set[str] = set()
        for camera in self.cameras:
            if camera.name in seen:
                raise ValueError(f"camera name {camera.name!r} is used twice; names must be unique")
            seen.add(camera.name)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives as init kwargs; the environment must win over it.
        return env_settings, init_settings, file_secret_settings

    def media_dir(self) -> Path:
        return self.media.dir if self.media.dir is not None else self.storage.data_dir / "media"

    def redacted(self) -> dict[str, Any]:
        """The effective configuration as plain data with every secret masked."""
        data: dict[str, Any] = _plain(self.model_dump(mode="python"))
        return data


def _plain(value: Any) -> Any:
    """Model dump → YAML/JSON-safe data; secrets become their masked display form."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, SecretStr):
        return str(value)  # SecretUrl shows the URL with its password masked
    if isinstance(value, Path):
        return value.as_posix()
    return value
