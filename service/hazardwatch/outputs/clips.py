"""Event clips: an MP4 of the pre-roll and the event's frames, encoded off the hot path.

The recorder sees the frames the pipeline scored (motion samples, pre-roll and post-roll)
through a bounded queue — a full queue drops frames from clips, never stalls scoring. It
keeps a short per-camera history so a clip starts before the event did, writes frames as
they come (no event is held in memory), and re-times them to their capture times so a
clip plays at real speed. A finished clip is renamed into place and handed to
`on_clip` (the writer links it to the event).

For a camera that is recorded (`capture/recorder.py`), the clip is cut instead from its
full-rate segments, without re-encoding: the segments that overlap the event, widened by
the pre-roll and post-roll, are joined into one MP4 once the segment after the window has
begun. Segments are cut at the camera's keyframes, so a clip starts up to one segment
earlier and ends up to one later than the window. When no segment covers the event (the
recorder was down, ffmpeg failed) the sampled-frame clip stays.

From an event's start until its clip is stored (or has failed), `pending` says when to ask
again: the API answers the clip link with 202 and Retry-After meanwhile, never 404.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from hazardwatch.capture.recorder import SEGMENT_SUFFIX
from hazardwatch.records import ClipLink, EventRecord, EventUpdate, Frame, Image
from hazardwatch.redact import redact_text

log = logging.getLogger(__name__)
_STOP = object()
MAX_GAP_S = 2.0  # a longer pause (no motion) is shown as this long, not as a frozen minute
STORE_GRACE_S = 60.0  # a published clip not stored by then (database down) stops being "coming"


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


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """A camera's segments as (UTC start second, path), oldest first."""
    try:
        found = [
            (int(p.stem), p)
            for p in directory.iterdir()
            if p.suffix == SEGMENT_SUFFIX and p.stem.isdigit()
        ]
    except OSError:
        return []
    return sorted(found)


def segments_for(directory: Path, start: float, end: float) -> list[Path]:
    """The segments that may overlap [start, end] (UTC seconds). A segment lasts until the
    next one begins, the newest until its last write. A name is its start second rounded
    down, so a segment is taken when its named second is before `end` and the next name
    plus one second is after `start`."""
    segments = list_segments(directory)
    chosen = []
    for i, (begins, path) in enumerate(segments):
        if i + 1 < len(segments):
            ends = segments[i + 1][0] + 1.0
        else:
            try:
                ends = path.stat().st_mtime
            except OSError:
                continue
        if begins < end and ends > start:
            chosen.append(path)
    return chosen


def join_segments(segments: list[Path], target: Path, ffmpeg: str = "ffmpeg") -> str | None:
    """Join segments into one MP4 without re-encoding; None, or why it failed."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as listing:
        for path in segments:
            listing.write(f"file '{path.resolve().as_posix()}'\n")
    command = [
        ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0",
        "-i", listing.name, "-map", "0:v:0", "-c", "copy", "-movflags", "+faststart",
        "-f", "mp4", str(target),
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command, capture_output=True, timeout=TRANSCODE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    finally:
        Path(listing.name).unlink(missing_ok=True)
    if done.returncode != 0 or not target.is_file() or target.stat().st_size == 0:
        message = done.stderr.decode(errors="replace").strip()
        return message[-300:] or f"ffmpeg exited with code {done.returncode}"
    return None


@dataclass
class _Clip:
    uuid: str
    relative: Path
    tmp: Path
    writer: cv2.VideoWriter
    size: tuple[int, int]
    last_t: float | None = None
    frames: int = 0


@dataclass(frozen=True, slots=True)
class _Cut:
    """A recorded camera's event waiting for the segment after its window to begin."""

    uuid: str
    relative: Path
    segments: Path
    start: float  # UTC seconds, pre-roll included
    end: float  # UTC seconds, post-roll included
    give_up_at: float  # UTC seconds: cut with what exists (the recorder may be down)
    has_fallback: bool  # a sampled-frame clip is already at `relative`


@dataclass
class _Camera:
    # Frames, not pixels: a frame that came over a broker is decoded only if a clip
    # takes it (most never are).
    history: deque[Frame] = field(default_factory=deque)
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
        recorded: Callable[[str], Path | None] = lambda camera: None,
        postroll_s: float = 2.0,
        max_clip_s: float = 600.0,
        segment_s: float = 2.0,
        ffmpeg: str = "ffmpeg",
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`recorded(camera)` names the camera's segment directory when it is recorded at
        full rate, else None; the other keywords after it apply to those clips only."""
        self.recorded = recorded
        self.postroll_s = postroll_s
        self.max_clip_s = max_clip_s
        self.segment_s = segment_s
        self.ffmpeg = ffmpeg
        self._clock = clock
        self._cuts: list[_Cut] = []
        self._next_check = 0.0
        self.clips_full_rate = 0
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
        # Events whose clip is coming -> when it should be ready (wall clock, None: at the
        # event's end, not yet known). Read by the API's threads.
        self._pending: dict[str, float | None] = {}
        self._pending_lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Finish what is queued, close every open clip, stop."""
        self._queue.put(_STOP)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def pending(self, uuid: str) -> float | None:
        """Seconds to wait before asking for the event's clip again; None when no clip is
        coming (never made, failed, or stored: the event's row then says where it is)."""
        with self._pending_lock:
            if uuid not in self._pending:
                return None
            ready_at = self._pending[uuid]
            if ready_at is None:  # still open: its clip is cut after its end
                return 5.0
            now = self._clock()
            if now > ready_at + STORE_GRACE_S:
                del self._pending[uuid]
                return None
            return max(1.0, ready_at - now)

    def clip_stored(self, record: EventRecord) -> None:
        """The writer linked the event's clip (writer thread)."""
        self._settled(record.uuid)

    def _expect(self, uuid: str, ready_at: float | None) -> None:
        with self._pending_lock:
            self._pending[uuid] = ready_at

    def _settled(self, uuid: str) -> None:
        with self._pending_lock:
            self._pending.pop(uuid, None)

    # Called from the scoring thread: never block.
    def on_frame(self, frame: Frame) -> None:
        if self._queue.qsize() >= self.queue_size:
            self.frames_dropped += 1  # encoding is behind: the clip skips, scoring goes on
            return
        self._queue.put(frame)

    def on_event(self, update: EventUpdate) -> None:
        if update.resumed:  # continued from an earlier run: its clip starts here
            update = dataclasses.replace(update, kind="started")
        if update.kind == "started":
            self._expect(update.record.uuid, None)
        elif update.kind == "ended":
            self._expect(update.record.uuid, self._clock() + 2.0)  # refined when cut
        if update.kind in ("started", "ended"):
            self._queue.put(update)

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=0.5 if self._cuts else None)
            except queue.Empty:
                item = None
            try:
                if item is _STOP:
                    for cam in self._cameras.values():
                        for clip in list(cam.clips.values()):
                            self._finish(cam, clip)
                    self._cut_due(final=True)
                    return
                self._cut_due()
                if isinstance(item, Frame):
                    self._frame(item)
                elif isinstance(item, EventUpdate):
                    self._event(item)
            except Exception:
                log.exception("clip recorder: %s failed", type(item).__name__)

    def _frame(self, frame: Frame) -> None:
        cam = self._cameras.setdefault(frame.camera, _Camera())
        t = frame.timestamp
        if frame.decoded:  # pixels in memory (one process): keep them at the clip's size
            frame = dataclasses.replace(frame, pixels=self._fit(frame.image))
        cam.history.append(frame)
        while cam.history and cam.history[0].timestamp < t - self.preroll_s:
            cam.history.popleft()
        for clip in cam.clips.values():
            self._write(clip, frame)

    def _event(self, update: EventUpdate) -> None:
        record = update.record
        cam = self._cameras.setdefault(record.camera, _Camera())
        if update.kind == "started":
            if record.uuid in cam.clips:
                return
            clip = self._open(record.camera, record.uuid, cam)
            if clip is not None:
                cam.clips[record.uuid] = clip
                for frame in cam.history:
                    self._write(clip, frame)
        elif update.kind == "ended":
            clip = cam.clips.get(record.uuid)
            has_fallback = clip is not None and self._finish(cam, clip, publish=False)
            segments = self.recorded(record.camera)
            if segments is None:
                if has_fallback:
                    self._publish(record.uuid, Path(record.camera) / f"{record.uuid}.mp4")
                else:
                    self._settled(record.uuid)  # no clip is coming
                return
            end = record.ended_at or record.peak_at
            start = record.started_at.timestamp() - self.preroll_s
            stop = min(end.timestamp() + self.postroll_s, start + self.max_clip_s)
            relative = Path(record.camera) / f"{record.uuid}.mp4"
            give_up = stop + 3 * self.segment_s + 10.0
            # Cut once the segment after the window begins: a segment after `stop`.
            self._expect(record.uuid, stop + self.segment_s + 1.0)
            self._cuts.append(
                _Cut(record.uuid, relative, segments, start, stop, give_up, has_fallback)
            )

    def _cut_due(self, final: bool = False) -> None:
        """Cut every waiting clip whose window is closed (all of them when `final`)."""
        if not final and (not self._cuts or time.monotonic() < self._next_check):
            return
        self._next_check = time.monotonic() + 0.5  # a listing per waiting cut, not per frame
        now = self._clock()
        for cut in list(self._cuts):
            newest = list_segments(cut.segments)[-1:]
            closed = bool(newest) and newest[0][0] > cut.end
            if final or closed or now >= cut.give_up_at:
                self._cuts.remove(cut)
                self._cut(cut)

    def _cut(self, cut: _Cut) -> None:
        segments = segments_for(cut.segments, cut.start, cut.end)
        target = self.media_dir / cut.relative
        why = "no segment covers the event (was the recorder running?)"
        if segments:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{cut.uuid}.cut.mp4")
            failed = join_segments(segments, tmp, self.ffmpeg)
            if failed is None:
                tmp.replace(target)
                self.clips_full_rate += 1
                self._publish(cut.uuid, cut.relative)
                return
            tmp.unlink(missing_ok=True)
            why = f"joining {len(segments)} segment(s) failed: {redact_text(failed)}"
        if cut.has_fallback:
            log.warning(
                "event %s: full-rate clip not cut (%s); keeping the sampled one", cut.uuid, why
            )
            self._publish(cut.uuid, cut.relative)
        else:
            self.clips_failed += 1
            self._settled(cut.uuid)
            log.error("event %s: no clip: %s", cut.uuid, why)

    def _open(self, camera: str, uuid: str, cam: _Camera) -> _Clip | None:
        newest = self._pixels(cam.history[-1]) if cam.history else None
        if newest is None:
            return None
        height, width = newest.shape[:2]
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

    def _write(self, clip: _Clip, frame: Frame) -> None:
        t = frame.timestamp
        if clip.last_t is not None and t <= clip.last_t:
            return
        image = self._pixels(frame)
        if image is None:
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

    def _finish(self, cam: _Camera, clip: _Clip, publish: bool = True) -> bool:
        """Close the sampled-frame clip and move it into place; False when it failed."""
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
            return False
        if publish:
            self._publish(clip.uuid, clip.relative)
        return True

    def _publish(self, uuid: str, relative: Path) -> None:
        self.clips_written += 1
        self.on_clip(ClipLink(uuid, relative.as_posix()))

    def _pixels(self, frame: Frame) -> Image | None:
        """The frame fitted to `max_width`; None (logged) for one whose image does not
        decode (a damaged JPEG from a broker): the clip goes on without it."""
        try:
            return self._fit(frame.image)
        except ValueError as exc:
            log.warning("camera %s frame %d left out of a clip: %s", frame.camera, frame.seq, exc)
            return None

    def _fit(self, image: Image) -> Image:
        height, width = image.shape[:2]
        if width <= self.max_width:
            return image
        scale = self.max_width / width
        size = (self.max_width, max(2, round(height * scale / 2) * 2))
        resized: Image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        return resized
