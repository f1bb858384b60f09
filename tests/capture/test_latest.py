"""A camera's latest frame for the review page's tiles: the frame a real reader read
last, encoded small and only once per frame."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest

from hazardwatch.capture import latest as latest_module
from hazardwatch.capture.fleet import NoCameras
from hazardwatch.capture.latest import LatestFrames
from hazardwatch.capture.reader import CameraReader, ReaderState
from hazardwatch.capture.sources import SourceSpec
from hazardwatch.images import decode_jpeg, jpeg_size
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
    assert reader.latest is not None and reader.latest.seq == 10
    with mock.patch.object(latest_module, "encode_jpeg", wraps=latest_module.encode_jpeg) as enc:
        first = frames.jpeg("gate")
        assert frames.jpeg("gate") == first and frames.cameras() == ["gate"]
        assert enc.call_count == 1  # the page asks again and again; one frame, one encoding
    assert first is not None
    size = jpeg_size(first)
    assert size == (480, 270)  # a tile, not the 640 px frame
    assert decode_jpeg(first).shape[:2] == (size[1], size[0])
    assert frames.jpeg("elsewhere") is None
