"""Event clips: cut from full-rate segments when the camera is recorded, else the sampled ones."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from hazardwatch.outputs.clips import ClipRecorder, segments_for
from hazardwatch.records import ClipLink, EventRecord, EventUpdate, Frame
from tests.capture.test_recorder import probe
from tests.conftest import make_h264_clip

BASE = 1_800_000_000  # the UTC second the first segment begins


def _touch(directory: Path, start: int, mtime: float | None = None) -> None:
    path = directory / f"{start}.mp4"
    path.write_bytes(b"x")
    if mtime is not None:
        os.utime(path, (mtime, mtime))


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ((112, 115), [110]),  # inside one segment
        ((95, 101), [100]),  # before the first: the first
        ((105, 125), [100, 110, 120]),  # across boundaries
        ((125, 140), [120]),  # past the newest's start, before its last write
        ((135, 140), []),  # after everything recorded
        ((20, 30), []),  # before everything recorded
    ],
)
def test_segments_for_a_window(
    tmp_path: Path, window: tuple[int, int], expected: list[int]
) -> None:
    for start in (100, 110):
        _touch(tmp_path, start)
    _touch(tmp_path, 120, mtime=130)
    (tmp_path / "notes.txt").write_text("not a segment")
    (tmp_path / "abc.mp4").write_bytes(b"not named by a time")
    got = segments_for(tmp_path, *window)
    assert [int(p.stem) for p in got] == expected


@pytest.fixture(scope="module")
def segments(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten 1 s H.264 segments at 10 fps, 320x240, named BASE … BASE+9 (as ffmpeg's
    segment muxer writes them for a recorded camera)."""
    root = tmp_path_factory.mktemp("segments")
    clip = make_h264_clip(root / "source.mp4", 10, size="320x240", fps=10)
    numbered, out = root / "numbered", root / "cam"
    numbered.mkdir()
    out.mkdir()
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-i", str(clip), "-c", "copy", "-f", "segment",
         "-segment_time", "1", "-segment_format", "mp4", "-reset_timestamps", "1",
         str(numbered / "%d.mp4")],
        check=True, timeout=60,
    )  # fmt: skip
    for part in numbered.glob("*.mp4"):
        part.rename(out / f"{BASE + int(part.stem)}.mp4")
    return out


def _event(kind: str, start: float, end: float | None) -> EventUpdate:
    record = EventRecord(
        uuid="e1", camera="cam", class_name="fire", severity="critical",
        status="open" if end is None else "closed",
        started_at=datetime.fromtimestamp(start, UTC), peak_at=datetime.fromtimestamp(start, UTC),
        peak_score=0.9, mean_score=0.8,
        ended_at=None if end is None else datetime.fromtimestamp(end, UTC),
    )  # fmt: skip
    return EventUpdate(kind, record, None, None)


def _record(
    tmp_path: Path, recorded: Path | None, now: float
) -> tuple[list[ClipLink], ClipRecorder]:
    links: list[ClipLink] = []
    clips = ClipRecorder(
        tmp_path / "media", links.append, preroll_s=1.0, fps=3.0,
        recorded=lambda camera: recorded, postroll_s=1.0, segment_s=1.0,
        clock=lambda: now,
    )  # fmt: skip
    clips.start()
    image = np.full((240, 320, 3), 90, np.uint8)
    for i, t in enumerate(np.arange(BASE + 2.0, BASE + 6.0, 1 / 3)):  # sampled at 3 fps
        clips.on_frame(Frame("cam", i, float(t), datetime.fromtimestamp(t, UTC), image))
        if i == 3:
            clips.on_event(_event("started", BASE + 3.0, None))
    clips.on_event(_event("ended", BASE + 3.0, BASE + 5.0))
    assert clips.stop(60)
    return links, clips


def test_a_recorded_camera_gets_a_full_rate_clip_cut_without_reencoding(
    tmp_path: Path, segments: Path
) -> None:
    links, clips = _record(tmp_path, segments, now=BASE + 10)
    assert links == [ClipLink("e1", "cam/e1.mp4")]  # linked once, to the full-rate clip
    assert clips.clips_full_rate == 1 and clips.clips_failed == 0
    info = probe(tmp_path / "media" / "cam" / "e1.mp4")
    # Event 3-5 s, pre/post-roll 1 s: segments 2…6 whole, every frame at 10 fps, H.264
    # at the camera's size (the sampled clip would be mp4v or re-encoded, at 3 fps).
    assert info["codec_name"] == "h264" and (info["width"], info["height"]) == (320, 240)
    assert info["r_frame_rate"] == "10/1"
    assert 40 <= int(str(info["nb_read_frames"])) <= 60
    assert not list((tmp_path / "media").rglob(".*"))  # no temporary files left


def test_a_recorded_camera_without_segments_keeps_the_sampled_clip(tmp_path: Path) -> None:
    empty = tmp_path / "segments"
    empty.mkdir()
    links, clips = _record(tmp_path, empty, now=BASE + 100)  # long past the give-up time
    assert links == [ClipLink("e1", "cam/e1.mp4")]
    assert clips.clips_full_rate == 0
    info = probe(tmp_path / "media" / "cam" / "e1.mp4")
    assert info["r_frame_rate"] == "3/1"  # the scored frames, re-timed


def test_a_cut_waits_for_the_segment_after_the_window(tmp_path: Path, segments: Path) -> None:
    # Only segments up to BASE+5 exist yet and the give-up time is far: nothing is linked
    # until the recorder has moved on (here: until the clip recorder closes).
    partial = tmp_path / "partial"
    partial.mkdir()
    for path in sorted(segments.iterdir())[:6]:
        (partial / path.name).write_bytes(path.read_bytes())
    links: list[ClipLink] = []
    clips = ClipRecorder(
        tmp_path / "media", links.append, recorded=lambda camera: partial,
        postroll_s=1.0, segment_s=1.0, clock=lambda: BASE + 6.0,
    )  # fmt: skip
    clips.start()
    clips.on_event(_event("ended", BASE + 3.0, BASE + 5.0))
    time.sleep(1.5)
    assert links == []  # still waiting for BASE+7's segment
    (partial / f"{BASE + 7}.mp4").write_bytes((segments / f"{BASE + 7}.mp4").read_bytes())
    deadline = time.monotonic() + 5
    while not links and time.monotonic() < deadline:
        time.sleep(0.05)
    assert links == [ClipLink("e1", "cam/e1.mp4")] and clips.clips_full_rate == 1
    assert clips.stop(10)


def test_frames_from_a_broker_are_decoded_only_for_a_clip(tmp_path: Path) -> None:
    """The events service gets every scored frame still encoded: only those a clip takes
    (pre-roll and event) are decoded, each once; one that does not decode is left out."""
    decoded: list[int] = []

    def lazy(i: int) -> Callable[[], np.ndarray]:
        def decode() -> np.ndarray:
            decoded.append(i)
            if i == 14:
                raise ValueError("the payload is not a JPEG (or PNG) image")
            return np.full((240, 320, 3), 90, np.uint8)

        return decode

    links: list[ClipLink] = []
    clips = ClipRecorder(tmp_path / "media", links.append, preroll_s=1.0, fps=3.0)
    clips.start()
    for i, t in enumerate(np.arange(BASE, BASE + 8.0, 1 / 3)):  # 24 frames at 3 fps
        clips.on_frame(Frame("cam", i, float(t), datetime.fromtimestamp(t, UTC), lazy(i)))
        if i == 12:  # BASE + 4 s
            clips.on_event(_event("started", BASE + 4.0, None))
        if i == 17:
            clips.on_event(_event("ended", BASE + 4.0, BASE + 5.67))
    assert clips.stop(60)
    assert links == [ClipLink("e1", "cam/e1.mp4")]
    # Pre-roll 1 s before the start (frames 9-12) and the event's frames up to the end.
    assert sorted(decoded) == list(range(9, 18))
    assert probe(tmp_path / "media" / "cam" / "e1.mp4")["r_frame_rate"] == "3/1"


def test_the_pre_roll_keeps_frames_in_memory_at_the_clips_size(tmp_path: Path) -> None:
    """One process hands over decoded frames: the history keeps them shrunk to
    `max_width`, not at the camera's size (a 4K camera's pre-roll would be 25 MB a frame)."""
    clips = ClipRecorder(tmp_path / "media", lambda link: None, preroll_s=5.0, max_width=320)
    clips.start()
    big = np.full((480, 640, 3), 90, np.uint8)
    clips.on_frame(Frame("cam", 1, float(BASE), datetime.fromtimestamp(BASE, UTC), big))
    assert clips.stop(30)
    kept = clips._cameras["cam"].history[0]
    assert kept.decoded and kept.image.shape == (240, 320, 3)
