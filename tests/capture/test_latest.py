"""A camera's latest frame for the review page's tiles: a shrunk copy a real reader
keeps every 2 s, encoded only once per kept frame."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from hazardwatch.capture import latest as latest_module
from hazardwatch.capture.fleet import NoCameras
from hazardwatch.capture.latest import LatestFrame, LatestFrames
from hazardwatch.capture.reader import CameraReader, ReaderState
from hazardwatch.capture.sources import SourceSpec
from hazardwatch.images import decode_jpeg, jpeg_size
from hazardwatch.records import Frame
from tests.conftest import make_h264_clip
from tests.helpers import wait_for


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_h264_clip(tmp_path_factory.mktemp("clips") / "tile.mp4", 1, "640x360", fps=10)


def test_the_tile_shows_the_last_frame_read_small_and_encoded_once(clip: Path) -> None:
    reader = CameraReader("gate", SourceSpec("file", str(clip)), lambda frame: None)
    frames = LatestFrames(NoCameras(readers=(reader,)))
    assert frames.jpeg("gate") is None  # nothing read yet
    reader.start()
    try:
        assert wait_for(lambda: reader.state == ReaderState.ENDED, 10)
    finally:
        reader.request_stop()
        assert reader.stop(10)
    # Kept every 2 s of reading, already shrunk: the first frame of this quick file.
    assert reader.latest.frame is not None and reader.latest.frame.seq == 1
    assert reader.latest.frame.image.shape == (270, 480, 3)
    with mock.patch.object(latest_module, "encode_jpeg", wraps=latest_module.encode_jpeg) as enc:
        first = frames.jpeg("gate")
        assert frames.jpeg("gate") == first and frames.cameras() == ["gate"]
        assert enc.call_count == 1  # the page asks again and again; one frame, one encoding
    assert first is not None
    size = jpeg_size(first)
    assert size == (480, 270)  # a tile, not the 640 px frame
    assert decode_jpeg(first).shape[:2] == (size[1], size[0])
    assert frames.jpeg("elsewhere") is None


def test_a_frame_is_kept_every_interval_not_every_frame() -> None:
    kept = LatestFrame(every_s=2.0)
    image = np.zeros((720, 1280, 3), np.uint8)
    at = datetime(2026, 12, 3, tzinfo=UTC)
    for seq, now in enumerate([0.0, 0.5, 1.9, 2.0, 3.0, 4.1], start=1):
        kept.offer(Frame("gate", seq, now, at, image), now)
        if seq == 3:
            assert kept.frame is not None and kept.frame.seq == 1
    assert kept.frame is not None and kept.frame.seq == 6  # kept at 0, 2.0 and 4.1
    assert kept.frame.image.shape == (270, 480, 3)
