"""Settings into components: the cameras (reader, motion gate, sampler, recorder), the
scoring worker, the alert channels, the clip recorder and the media signer, each stage's
parameters taken from its settings section by keyword; a reload's new cameras; the broker
link and the streams' layouts. The
composition roots (`app.Service` for `run` and `events`, `roles` for `capture` and
`worker`) wire what this module builds.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hazardwatch.capture.fleet import Builder, CameraFleet
from hazardwatch.capture.reader import CameraReader, ReaderOptions
from hazardwatch.capture.recorder import (
    RecorderOptions,
    SegmentRecorder,
    recording_unsupported,
    segment_dir,
)
from hazardwatch.capture.sources import SourceSpec
from hazardwatch.errors import ConfigError, HazardwatchError
from hazardwatch.handoff.frames import FramesLayout
from hazardwatch.handoff.link import BrokerLink
from hazardwatch.handoff.queue import FrameSink, FrameSource
from hazardwatch.handoff.scores import ScoresLayout
from hazardwatch.images import ImageOptions
from hazardwatch.metrics import Metrics
from hazardwatch.motion.gate import GateParams, MotionGate
from hazardwatch.motion.snippets import SamplerParams, SnippetSampler
from hazardwatch.motion.stage import MotionStage
from hazardwatch.outputs.alerts import make_test_alert
from hazardwatch.outputs.clips import ClipRecorder
from hazardwatch.outputs.media_links import MediaSigner
from hazardwatch.outputs.mqtt import MqttPublisher, MqttTls
from hazardwatch.outputs.webhook import WebhookSender
from hazardwatch.outputs.writer import EventWriter
from hazardwatch.records import GatedFrame, ScoredFrame
from hazardwatch.redact import redact_hook_url, redact_text
from hazardwatch.scoring.bank import DEFAULT_BANK
from hazardwatch.scoring.bank_source import BankSource, FileBank
from hazardwatch.scoring.model import Encoder, load_clip
from hazardwatch.scoring.worker import ScoringWorker
from hazardwatch.settings import (
    BrokerSettings,
    CameraSettings,
    Location,
    MotionSettings,
    Settings,
)

log = logging.getLogger(__name__)


EncoderFactory = Callable[[Settings], Encoder]


AlertSink = WebhookSender | MqttPublisher


def location_of(settings: Settings, camera: str) -> Location | None:
    """A camera's location in `settings` (weather for its events); None: not configured
    there, or without one."""
    return next((c.location for c in settings.cameras if c.name == camera), None)


def load_encoder(settings: Settings) -> Encoder:
    s = settings.scoring
    return load_clip(s.model, s.device, s.precision, s.download_dir, s.batch_size, s.cpu_fast_path)


def build_camera(
    camera: CameraSettings, settings: Settings, queue: FrameSink[GatedFrame]
) -> CameraReader:
    """A camera's reader, motion gate and sampler, handing frames to `queue` (the local
    queue in one process, JetStream on a capture node)."""
    # Parameters by keyword, from the settings, in this module only.
    m = settings.motion
    gate = MotionGate(gate_params(m), camera.masks)
    sampler = SnippetSampler(
        SamplerParams(
            preroll_s=m.preroll_s,
            postroll_s=m.postroll_s,
            sample_fps=m.sample_fps,
            heartbeat_s=m.heartbeat_s,
        ),
        queue.put,
    )
    c = settings.capture
    options = ReaderOptions(
        open_timeout_s=c.open_timeout_s,
        read_timeout_s=c.read_timeout_s,
        stall_timeout_s=c.stall_timeout_s,
        backoff_initial_s=c.backoff_initial_s,
        backoff_max_s=c.backoff_max_s,
        fps_limit=camera.fps_limit,
        loop=camera.loop,
    )
    spec = SourceSpec.parse(camera.url.get_secret_value(), camera.rtsp_transport)
    return CameraReader(
        camera.name,
        spec,
        MotionStage(camera.name, gate, sampler),
        options,
        recorder=build_recorder(camera, spec, settings),
    )


def camera_builder(settings: Settings, sink: FrameSink[GatedFrame]) -> Builder:
    """What a fleet builds its cameras with: `build_camera` on these settings."""
    return lambda camera: build_camera(camera, settings, sink)


def build_worker(
    settings: Settings,
    encoder: Encoder,
    source: FrameSource[GatedFrame],
    on_scored: Callable[[list[ScoredFrame]], None],
    metrics: Metrics,
    banks: BankSource | None = None,
    model_name: str = "",
) -> ScoringWorker:
    """The scoring worker on `source` (the local queue, or JetStream on a worker node);
    `banks`: where the live prompt bank comes from (default: the bank file);
    `model_name`: what the deployment calls the model (default: the encoder's name)."""
    banks = banks or file_bank(settings)
    s = settings.scoring
    return ScoringWorker(
        encoder,
        banks.current(),
        source,
        on_scored,
        batch_size=s.batch_size,
        max_batch_wait_s=s.max_batch_wait_ms / 1000,
        motion_crop=s.motion_crop,
        max_frame_age_s=s.max_frame_age_s,
        bank_source=banks,
        metrics=metrics,
        model_name=model_name,
    )


def file_bank(settings: Settings) -> FileBank:
    """The configured bank file (or the shipped one), re-read on change (`prompts.reload`)."""
    return FileBank(settings.prompts.path or DEFAULT_BANK, settings.prompts.reload)


def gate_params(m: MotionSettings) -> GateParams:
    return GateParams(
        threshold=m.threshold,
        min_area=m.min_area,
        downscale_width=m.downscale_width,
        blur_kernel=m.blur_kernel,
        dilate_iterations=m.dilate_iterations,
        lighting_guard=m.lighting_guard,
    )


def build_recorder(
    camera: CameraSettings, spec: SourceSpec, settings: Settings
) -> SegmentRecorder | None:
    """The camera's full-rate recorder when it asks for one and can have one."""
    if not camera.record:
        return None
    r = settings.recording
    why = recording_unsupported(spec)
    if why is None and shutil.which(r.ffmpeg) is None:
        why = f"ffmpeg ({r.ffmpeg!r}) is not on PATH: install it or set recording.ffmpeg"
    if why is not None:
        log.warning("camera %s: not recorded: %s", camera.name, why)
        return None
    c = settings.capture
    options = RecorderOptions(
        segment_s=r.segment_s,
        open_timeout_s=c.open_timeout_s,
        backoff_initial_s=c.backoff_initial_s,
        backoff_max_s=c.backoff_max_s,
        ffmpeg=r.ffmpeg,
    )
    directory = segment_dir(settings.media_dir(), camera.name)
    return SegmentRecorder(camera.name, spec, directory, options)


def stop_timeout_s(settings: Settings) -> float:
    """How long a stopping reader may take: its read timeout, and 5 s to close."""
    return settings.capture.read_timeout_s + 5


def reload_cameras(
    fleet: CameraFleet,
    current: Settings,
    read: Callable[[], Settings] | None,
    sink: FrameSink[GatedFrame],
) -> Settings:
    """SIGHUP in `run` and `capture`: re-read the configuration; cameras added, removed or
    changed take effect now through the fleet (a removed camera's open events end), every
    camera restarts when the capture or motion settings changed, other sections wait for a
    restart. Returns the settings in force: the current ones when the new cannot be read."""
    if read is None:
        log.warning("reload requested, but this run has no configuration to re-read")
        return current
    try:
        new = read()
    except (ConfigError, HazardwatchError, ValueError) as exc:
        log.error("configuration not reloaded, the running one stays: %s", redact_text(str(exc)))
        return current
    restart_all = new.motion != current.motion or new.capture != current.capture
    fleet.stop_timeout_s = stop_timeout_s(new)
    change = fleet.reload(new.cameras, camera_builder(new, sink), restart_all)
    ignored = [
        section
        for section in type(new).model_fields
        if section not in ("cameras", "motion", "capture")
        and getattr(new, section) != getattr(current, section)
    ]
    log.info(
        "configuration reloaded: %d camera(s) running; removed %s, (re)started %s",
        change.running,
        change.removed or "none",
        sorted(r.camera for r in change.started) or "none",
    )
    if ignored:
        log.warning("changes to %s take effect after a restart", ", ".join(ignored))
    return new


def check_exposure(settings: Settings) -> None:
    """Refuse to serve the API beyond loopback without a token (`ApiSettings.exposure`)."""
    problem = settings.api.exposure()
    if problem is not None:
        raise ConfigError(problem)


def media_signer(settings: Settings) -> MediaSigner:
    """Signs the media links of alerts and the events list whenever the API asks who is
    calling: keyed by api.token, or with users only, by a digest of their secrets (the
    same across restarts, so links in sent alerts keep working)."""
    api = settings.api
    key = api.token.get_secret_value() if api.token is not None else None
    if key is None and api.users:
        secrets = [s.get_secret_value() for u in api.users for s in (u.password_hash, u.token) if s]
        key = hashlib.sha256("\n".join(["hazardwatch media links", *secrets]).encode()).hexdigest()
    return MediaSigner(key, api.media_url_ttl_s)


def build_alert_channels(settings: Settings, metrics: Metrics) -> list[AlertSink]:
    """The configured alert channels (webhook, MQTT), not yet started."""
    channels: list[AlertSink] = []
    webhook = settings.alerts.webhook
    if webhook.url is not None:
        channels.append(
            WebhookSender(
                webhook.url.get_secret_value(),
                webhook.secret.get_secret_value() if webhook.secret else None,
                timeout_s=webhook.timeout_s,
                retries=webhook.retries,
                metrics=metrics,
            )
        )
    mqtt = settings.alerts.mqtt
    if mqtt.host is not None:
        channels.append(
            MqttPublisher(
                mqtt.host,
                mqtt.port,
                prefix=mqtt.topic_prefix,
                username=mqtt.username,
                password=mqtt.password.get_secret_value() if mqtt.password else None,
                media_dir=settings.media_dir(),
                metrics=metrics,
                tls=MqttTls(mqtt.tls_ca_file, mqtt.tls_cert_file, mqtt.tls_key_file)
                if mqtt.tls
                else None,
            )
        )
    return channels


def send_test_alerts(
    settings: Settings, camera: str, timeout_s: float = 10.0
) -> list[tuple[str, str | None]]:
    """`hazardwatch alert test`: one clearly marked test alert through every configured
    channel, now; per channel its (redacted) target and None when delivered, else why not."""
    alert = make_test_alert(camera)
    results = []
    for channel in build_alert_channels(settings, Metrics()):
        if isinstance(channel, WebhookSender):
            target = f"webhook {redact_hook_url(channel.url)}"
        else:
            target = f"mqtt {channel.host}:{channel.port} topic {channel.topic('events')}"
        try:
            results.append((target, channel.deliver_now(alert, timeout_s)))
        except Exception as exc:  # a channel's own bug must not hide the others' results
            log.exception("test alert through %s failed", target)
            results.append((target, f"{type(exc).__name__}: {redact_text(str(exc))}"))
    return results


def build_clip_recorder(
    settings: Settings,
    writer: EventWriter,
    recorded: Callable[[str], Path | None] = lambda camera: None,
) -> ClipRecorder | None:
    if not settings.media.clips:
        return None
    r = settings.recording
    return ClipRecorder(
        settings.media_dir(),
        writer.put_clip,
        preroll_s=settings.motion.preroll_s,
        fps=settings.motion.sample_fps,
        max_width=settings.media.clip_max_width,
        recorded=recorded,
        postroll_s=r.postroll_s,
        max_clip_s=r.max_clip_s,
        segment_s=r.segment_s,
        ffmpeg=r.ffmpeg,
    )


def cameras_from_sources(sources: list[str], loop: bool) -> list[dict[str, Any]]:
    """--source arguments as camera entries, named after the file or host."""
    cameras = []
    used: set[str] = set()
    for i, source in enumerate(sources, start=1):
        stem = Path(source.split("?")[0].rstrip("/")).stem if "://" not in source else ""
        base = "".join(ch if ch.isalnum() or ch in "_-." else "-" for ch in stem)[:48] or f"cam{i}"
        name = base
        while name in used:
            name = f"{base}-{i}"
        used.add(name)
        cameras.append({"name": name, "url": source, "loop": loop})
    return cameras


# ---------------------------------------------------------------------------- broker


def link_from_settings(settings: BrokerSettings, name: str) -> BrokerLink:
    """A link with the configured credentials and TLS (raises ConfigError when unset)."""
    if settings.url is None:
        raise ConfigError(
            "broker.url is not set: the roles need NATS JetStream "
            "(broker.url: nats://host:4222 in the config file, or HAZARDWATCH_BROKER__URL)"
        )
    tls = None
    if settings.tls_ca_file or settings.tls_cert_file:
        tls = ssl.create_default_context(
            cafile=str(settings.tls_ca_file) if settings.tls_ca_file else None
        )
        if settings.tls_cert_file:
            tls.load_cert_chain(
                str(settings.tls_cert_file),
                str(settings.tls_key_file) if settings.tls_key_file else None,
            )
    return BrokerLink(
        settings.url.get_secret_value(),
        name,
        creds_file=str(settings.creds_file) if settings.creds_file else None,
        tls=tls,
    )


def layouts_from_settings(settings: Settings) -> tuple[FramesLayout, ScoresLayout]:
    """The two streams' limits: the frames' age is `scoring.max_frame_age_s`."""
    b = settings.broker
    frames = FramesLayout(
        max_age_s=settings.scoring.max_frame_age_s,
        ack_wait_s=b.ack_wait_s,
        max_ack_pending=b.max_ack_pending,
        max_deliver=b.max_deliver,
    )
    return frames, ScoresLayout(max_age_s=b.scores_max_age_s, partitions=b.partitions)


def wire_options(settings: BrokerSettings) -> ImageOptions:
    """How capture encodes frames for the broker."""
    return ImageOptions(
        jpeg_quality=settings.jpeg_quality,
        max_width=settings.max_width,
        image_format=settings.image_format,
    )
