from __future__ import annotations

import itertools
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hazardwatch.capture.reader import Backoff, CameraReader, ReaderOptions, ReaderState
from hazardwatch.capture.sources import SourceSpec
from hazardwatch.errors import SourceError
from hazardwatch.records import Frame
from tests.conftest import RtspServer, make_h264_clip
from tests.helpers import wait_for


class Collector:
    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.lock = threading.Lock()

    def __call__(self, frame: Frame) -> None:
        with self.lock:
            self.frames.append(frame)

    def __len__(self) -> int:
        return len(self.frames)


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s at 10 fps = 20 frames."""
    return make_h264_clip(tmp_path_factory.mktemp("clips") / "short.mp4", 2, fps=10)


@pytest.fixture
def readers() -> Iterator[list[CameraReader]]:
    started: list[CameraReader] = []
    yield started
    for reader in started:
        reader.request_stop()
    for reader in started:
        assert reader.stop(15), f"reader {reader.camera} did not stop"


def start(readers: list[CameraReader], *args: Any, **kwargs: Any) -> CameraReader:
    reader = CameraReader(*args, **kwargs)
    reader.start()
    readers.append(reader)
    return reader


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    backoff = Backoff(1.0, 8.0, random.Random(1))
    delays = [backoff.next_delay() for _ in range(8)]
    ceilings = [1, 2, 4, 8, 8, 8, 8, 8]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays)  # jittered
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_file_is_read_to_its_end(readers: list[CameraReader], short_clip: Path) -> None:
    sink = Collector()
    reader = start(readers, "file", SourceSpec("file", str(short_clip)), sink)
    assert wait_for(lambda: reader.state == ReaderState.ENDED, 10)
    assert len(sink) == 20
    assert [f.seq for f in sink.frames] == list(range(1, 21))
    gaps = [b.timestamp - a.timestamp for a, b in zip(sink.frames, sink.frames[1:], strict=False)]
    assert all(abs(g - 0.1) < 0.01 for g in gaps), "file frames carry media time, not decode time"
    assert sink.frames[0].captured_at.tzinfo is not None


def test_fps_limit_drops_surplus_frames(readers: list[CameraReader], short_clip: Path) -> None:
    sink = Collector()
    options = ReaderOptions(fps_limit=5)
    reader = start(readers, "limited", SourceSpec("file", str(short_clip)), sink, options)
    assert wait_for(lambda: reader.done, 10)
    assert len(sink) == 10
    assert reader.stats.frames_dropped_fps == 10


def test_looping_file_keeps_going_in_real_time(
    readers: list[CameraReader], short_clip: Path
) -> None:
    sink = Collector()
    options = ReaderOptions(loop=True)
    reader = start(readers, "loop", SourceSpec("file", str(short_clip)), sink, options)
    assert wait_for(lambda: len(sink) > 25, 6)
    assert reader.state == ReaderState.STREAMING
    stamps = [f.timestamp for f in sink.frames]
    assert stamps == sorted(stamps), "time keeps increasing across loops"
    reader.request_stop()
    assert reader.stop(5)
    assert reader.state == ReaderState.STOPPED


def test_missing_file_ends_with_a_reason(readers: list[CameraReader], tmp_path: Path) -> None:
    reader = start(readers, "gone", SourceSpec("file", str(tmp_path / "x.mp4")), Collector())
    assert wait_for(lambda: reader.state == ReaderState.ENDED, 5)
    assert reader.stats.last_error is not None and "does not exist" in reader.stats.last_error


def test_sink_errors_are_counted_not_fatal(readers: list[CameraReader], short_clip: Path) -> None:
    calls = []

    def flaky(frame: Frame) -> None:
        calls.append(frame.seq)
        if frame.seq % 2:
            raise RuntimeError("boom")

    reader = start(readers, "flaky", SourceSpec("file", str(short_clip)), flaky)
    assert wait_for(lambda: reader.done, 10)
    assert len(calls) == 20 and reader.stats.sink_errors == 10


def test_failing_source_backs_off_and_stop_is_prompt(readers: list[CameraReader]) -> None:
    attempts: list[float] = []

    def opener(spec: SourceSpec, open_timeout: float, read_timeout: float) -> Any:
        attempts.append(time.monotonic())
        raise SourceError("cannot open rtsp source 'rtsp://u:***@cam/s': camera is down")

    options = ReaderOptions(backoff_initial_s=0.05, backoff_max_s=0.2)
    spec = SourceSpec.parse("rtsp://u:pw@cam/s")
    reader = start(readers, "down", spec, Collector(), options, opener=opener)
    assert wait_for(lambda: reader.stats.reconnects >= 5, 5)
    assert reader.state in (ReaderState.BACKING_OFF, ReaderState.CONNECTING)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert max(gaps) < 0.5, "capped backoff"
    assert "camera is down" in (reader.stats.last_error or "")
    reader.request_stop()
    assert reader.stop(2)


@pytest.mark.rtsp
def test_rtsp_frames_then_outage_then_recovery(
    readers: list[CameraReader], rtsp_server: RtspServer
) -> None:
    sink = Collector()
    options = ReaderOptions(
        open_timeout_s=3, read_timeout_s=2, backoff_initial_s=0.2, backoff_max_s=1.0
    )
    reader = start(readers, "rtsp", SourceSpec.parse(rtsp_server.url), sink, options)
    assert wait_for(lambda: len(sink) >= 10, 20), f"no frames over RTSP: {reader.stats}"
    assert reader.state == ReaderState.STREAMING
    assert sink.frames[0].image.shape[:2] == (180, 320)

    rtsp_server.stop()
    assert wait_for(lambda: reader.state == ReaderState.BACKING_OFF, 15)
    assert wait_for(lambda: reader.stats.reconnects >= 2, 15)
    before = len(sink)

    rtsp_server.start()
    assert wait_for(lambda: len(sink) > before + 10, 30), f"no recovery: {reader.stats}"
    assert reader.state == ReaderState.STREAMING
    assert reader.stats.last_error is None


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never says a word (a hung camera)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(sock.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(sock.getsockname()[1])
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    sock.close()


def test_hung_camera_times_out_and_does_not_affect_others(
    readers: list[CameraReader], silent_server: int, short_clip: Path
) -> None:
    options = ReaderOptions(open_timeout_s=1, read_timeout_s=1, backoff_initial_s=0.1)
    hung = start(
        readers,
        "hung",
        SourceSpec.parse(f"rtsp://127.0.0.1:{silent_server}/cam"),
        Collector(),
        options,
    )
    good_sink = Collector()
    good = start(readers, "good", SourceSpec("file", str(short_clip)), good_sink)
    assert wait_for(lambda: good.state == ReaderState.ENDED, 10)
    assert len(good_sink) == 20
    assert wait_for(lambda: hung.stats.reconnects >= 1, 15), "open must time out"
    assert "cannot open rtsp source" in (hung.stats.last_error or "")


def test_the_fps_gauge_is_the_reciprocal_of_the_mean_interval() -> None:
    """Jittery frames at 10 fps on average read 10, not the 13.3 of averaged rates."""
    from hazardwatch.capture.reader import mean_interval

    mean = None
    for i in range(400):
        mean = mean_interval(mean, 0.05 if i % 2 else 0.15)
    assert mean is not None and 1.0 / mean == pytest.approx(10.0, rel=0.06)
    assert mean_interval(None, 0.2) == 0.2


class JitteryStream:
    """A live source at 10 fps whose frames arrive up to ±30 ms off their schedule (the
    reader's clock is the arrival time), `frames` of them, then a lost connection."""

    def __init__(self, frames: int, seed: int = 7) -> None:
        rng = random.Random(seed)
        self.arrivals = [100.0 + 0.1 * k + rng.uniform(-0.03, 0.03) for k in range(frames)]
        self.now = 100.0
        self.index = -1

    def clock(self) -> float:
        return self.now

    def grab(self) -> bool:
        self.index += 1
        if self.index >= len(self.arrivals):
            return False
        self.now = self.arrivals[self.index]
        return True

    def retrieve(self) -> tuple[bool, Any]:
        import numpy as np

        return True, np.zeros((4, 4, 3), np.uint8)

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        pass


@pytest.mark.parametrize(("limit", "kept"), [(10.0, 300), (20.0, 300), (5.0, 150)])
def test_a_limit_at_or_above_the_source_rate_keeps_every_frame_of_a_jittery_stream(
    readers: list[CameraReader], limit: float, kept: int
) -> None:
    """Issue 29.7: `fps_limit: 10` on a 10 fps stream dropped one frame in fifteen."""
    stream = JitteryStream(300)
    sink = Collector()
    options = ReaderOptions(fps_limit=limit, backoff_initial_s=30.0, backoff_max_s=30.0)
    spec = SourceSpec.parse("rtsp://cam.local/live")
    reader = start(readers, "jitter", spec, sink, options, opener=lambda *a: stream,
                   clock=stream.clock)  # fmt: skip
    assert wait_for(lambda: reader.stats.reconnects >= 1, 10)
    assert abs(len(sink) - kept) <= 1, (len(sink), reader.stats.frames_dropped_fps)


def test_a_looping_file_logs_no_state_change_at_each_loop(
    readers: list[CameraReader], short_clip: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="hazardwatch.capture.reader"):
        sink = Collector()
        options = ReaderOptions(loop=True)
        reader = start(readers, "loop", SourceSpec("file", str(short_clip)), sink, options)
        assert wait_for(lambda: len(sink) > 45, 8)  # two loops and more
        reader.request_stop()
        assert reader.stop(5)
    changes = [r.getMessage() for r in caplog.records if "->" in r.getMessage()]
    assert changes == ["camera loop: connecting -> streaming"], changes
