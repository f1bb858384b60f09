"""Event clips: an MP4 of the pre-roll and the event's frames, encoded off the hot path.

The recorder sees the frames the pipeline scored (motion samples, pre-roll and post-roll)
through a bounded queue — a full queue drops frames from clips, never stalls scoring. It
keeps a short per-camera history so a clip starts before the event did, writes frames as
they come (no event is held in memory), and re-times them to their capture times so a
clip plays at real speed. A finished clip is renamed into place and handed to
`on_clip` (the writer links it to the event).
"""

from __future__ import annotations

import logging
import queue
import shutil
import subprocess
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from hazardwatch.detect.stage import EventUpdate
from hazardwatch.records import ClipLink, Frame, Image

log = logging.getLogger(__name__)
_STOP = object()
MAX_GAP_S = 2.0  # a longer pause (no motion) is shown as this long, not as a frozen minute


TRANSCODE_TIMEOUT_S = 300.0


def to_h264(source: Path, target: Path) -> bool:
    """Re-encode OpenCV's MPEG-4 part 2 output as H.264 (what browsers play) with ffmpeg.

    pip's OpenCV cannot write H.264 itself. Without ffmpeg on PATH the clip stays MPEG-4
    part 2: it plays in VLC and ffplay, not in a browser.
    """
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return False
    command = [
        ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", str(source),
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        "-movflags", "+faststart", "-f", "mp4", str(target),
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command, capture_output=True, timeout=TRANSCODE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("clip not converted to H.264 (%s); keeping MPEG-4 part 2", exc)
        return False
    if done.returncode != 0:
        log.warning(
            "clip not converted to H.264: %s", done.stderr.decode(errors="replace").strip()[:200]
        )
        return False
    return True


@dataclass
class _Clip:
    uuid: str
    relative: Path
    tmp: Path
    writer: cv2.VideoWriter
    size: tuple[int, int]
    last_t: float | None = None
    frames: int = 0


@dataclass
class _Camera:
    history: deque[tuple[float, Image]] = field(default_factory=deque)
    clips: dict[str, _Clip] = field(default_factory=dict)


class ClipRecorder:
    def __init__(
        self,
        media_dir: Path,
        on_clip: Callable[[ClipLink], None],
        *,
        preroll_s: float = 2.0,
        fps: float = 3.0,
        max_width: int = 1280,
        queue_size: int = 256,
    ) -> None:
        self.media_dir = media_dir
        self.on_clip = on_clip
        self.preroll_s = preroll_s
        self.fps = fps
        self.max_width = max_width
        self.queue_size = queue_size
        # Unbounded so event starts and ends always get through; frames are bounded below.
        self._queue: queue.Queue[object] = queue.Queue()
        self._cameras: dict[str, _Camera] = {}
        self._thread = threading.Thread(target=self._run, name="clip-recorder", daemon=True)
        self.frames_dropped = 0
        self.clips_written = 0
        self.clips_failed = 0

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float | None = 30.0) -> bool:
        """Finish what is queued, close every open clip, stop."""
        self._queue.put(_STOP)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # Called from the scoring thread: never block.
    def on_frame(self, frame: Frame) -> None:
        if self._queue.qsize() >= self.queue_size:
            self.frames_dropped += 1  # encoding is behind: the clip skips, scoring goes on
            return
        self._queue.put(frame)

    def on_event(self, update: EventUpdate) -> None:
        if update.kind in ("started", "ended"):
            self._queue.put(update)

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    for cam in self._cameras.values():
                        for clip in list(cam.clips.values()):
                            self._finish(cam, clip)
                    return
                if isinstance(item, Frame):
                    self._frame(item)
                elif isinstance(item, EventUpdate):
                    self._event(item)
            except Exception:
                log.exception("clip recorder: %s failed", type(item).__name__)

    def _frame(self, frame: Frame) -> None:
        cam = self._cameras.setdefault(frame.camera, _Camera())
        t = frame.timestamp
        image = self._fit(frame.image)
        cam.history.append((t, image))
        while cam.history and cam.history[0][0] < t - self.preroll_s:
            cam.history.popleft()
        for clip in cam.clips.values():
            self._write(clip, t, image)

    def _event(self, update: EventUpdate) -> None:
        record = update.record
        cam = self._cameras.setdefault(record.camera, _Camera())
        if update.kind == "started":
            if record.uuid in cam.clips:
                return
            clip = self._open(record.camera, record.uuid, cam)
            if clip is not None:
                cam.clips[record.uuid] = clip
                for t, image in cam.history:
                    self._write(clip, t, image)
        elif update.kind == "ended":
            clip = cam.clips.get(record.uuid)
            if clip is not None:
                self._finish(cam, clip)

    def _open(self, camera: str, uuid: str, cam: _Camera) -> _Clip | None:
        if not cam.history:
            return None
        height, width = cam.history[-1][1].shape[:2]
        relative = Path(camera) / f"{uuid}.mp4"
        target = self.media_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{uuid}.part.mp4")
        writer = cv2.VideoWriter(
            str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height)
        )
        if not writer.isOpened():
            self.clips_failed += 1
            log.error("clip for event %s not recorded: cannot open an MP4 writer", uuid)
            return None
        return _Clip(uuid, relative, tmp, writer, (width, height))

    def _write(self, clip: _Clip, t: float, image: Image) -> None:
        if clip.last_t is not None and t <= clip.last_t:
            return
        if (image.shape[1], image.shape[0]) != clip.size:
            image = cv2.resize(image, clip.size, interpolation=cv2.INTER_AREA)
        repeats = 1
        if clip.last_t is not None:
            repeats = max(1, round(min(t - clip.last_t, MAX_GAP_S) * self.fps))
        for _ in range(repeats):
            clip.writer.write(image)
        clip.frames += repeats
        clip.last_t = t

    def _finish(self, cam: _Camera, clip: _Clip) -> None:
        cam.clips.pop(clip.uuid, None)
        clip.writer.release()
        target = self.media_dir / clip.relative
        try:
            if clip.frames == 0:
                raise OSError("no frames")
            h264 = clip.tmp.with_name(f".{clip.uuid}.h264.mp4")
            if to_h264(clip.tmp, h264):
                h264.replace(target)
                clip.tmp.unlink(missing_ok=True)
            else:
                h264.unlink(missing_ok=True)
                clip.tmp.replace(target)
        except OSError as exc:
            self.clips_failed += 1
            log.error("clip for event %s not written: %s", clip.uuid, exc)
            clip.tmp.unlink(missing_ok=True)
            return
        self.clips_written += 1
        self.on_clip(ClipLink(clip.uuid, clip.relative.as_posix()))

    def _fit(self, image: Image) -> Image:
        height, width = image.shape[:2]
        if width <= self.max_width:
            return image
        scale = self.max_width / width
        size = (self.max_width, max(2, round(height * scale / 2) * 2))
        resized: Image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        return resized
