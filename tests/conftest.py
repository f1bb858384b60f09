"""Shared fixtures: real services (MariaDB), the ../shared data, temporary databases."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
import sqlalchemy as sa

from hazardwatch.components import cameras_from_sources
from hazardwatch.settings import Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("HAZARDWATCH_TEST_SHARED_DIR", REPO_ROOT.parent / "shared"))
# CI sets HAZARDWATCH_TEST_STRICT=1: a missing service or data set is then a failure.
STRICT = os.environ.get("HAZARDWATCH_TEST_STRICT") == "1"


def skip_or_fail(reason: str) -> NoReturn:
    """Skip with a clear reason on a developer machine; fail in CI where all must be present."""
    if STRICT:
        pytest.fail(f"{reason} (HAZARDWATCH_TEST_STRICT=1: required in CI)")
    pytest.skip(reason)


MYSQL_SERVER_URL = os.environ.get(
    "HAZARDWATCH_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/"
)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED_DIR.is_dir():
        skip_or_fail(f"shared data not found at {SHARED_DIR} (it lives beside the repository)")
    return SHARED_DIR


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[sa.Engine]:
    """An engine on the MariaDB/MySQL server (no database selected); skip if none answers."""
    engine = sa.create_engine(MYSQL_SERVER_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        engine.dispose()
        skip_or_fail(
            f"no MySQL/MariaDB server answers at {engine.url.render_as_string()} "
            f"({exc.orig}); set HAZARDWATCH_TEST_MYSQL_URL to point at one"
        )
    yield engine
    engine.dispose()


@pytest.fixture
def mysql_url(mysql_server: sa.Engine) -> Iterator[str]:
    """A fresh, empty database on the server for one test, dropped afterwards."""
    name = f"hw_test_{uuid.uuid4().hex[:12]}"
    with mysql_server.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    url = mysql_server.url.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with mysql_server.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{(tmp_path / 'hazardwatch.db').as_posix()}"


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each storage test runs on SQLite and on the real MariaDB."""
    fixture = "sqlite_url" if request.param == "sqlite" else "mysql_url"
    return str(request.getfixturevalue(fixture))


# ---------------------------------------------------------------------------- media

SYSTEM_PYTHON = os.environ.get("HAZARDWATCH_TEST_SYSTEM_PYTHON", "/usr/bin/python3")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_h264_clip(
    path: Path, seconds: float, size: str = "320x180", fps: int = 10, source: Path | None = None
) -> Path:
    """Transcode `source` (or a test pattern) to H.264 MP4 with ffmpeg."""
    if shutil.which("ffmpeg") is None:
        skip_or_fail("ffmpeg is not installed (apt-get install ffmpeg)")
    width, height = size.split("x")
    if source is not None:
        inputs = ["-stream_loop", "-1", "-i", str(source)]
        vf = ["-vf", f"scale={width}:{height},fps={fps}"]
    else:
        inputs = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}"]
        vf = []
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            *inputs,
            "-t",
            str(seconds),
            *vf,
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-g",
            str(fps),
            "-pix_fmt",
            "yuv420p",
            "-an",
            str(path),
        ],
        check=True,
        timeout=300,
    )
    return path


@pytest.fixture
def free_tcp_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def rtsp_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 60 s H.264 clip (real footage when ../shared is there) for the RTSP server."""
    source = SHARED_DIR / "data" / "videos" / "car-detection.mp4"
    out = tmp_path_factory.mktemp("rtsp") / "clip.mp4"
    return make_h264_clip(out, 60, source=source if source.is_file() else None)


class RtspServer:
    """gst-rtsp-server in a subprocess that tests can kill and restart on the same port."""

    def __init__(self, clip: Path, port: int, auth: list[str] | None = None) -> None:
        """`auth`: extra arguments, e.g. ["--user", "u", "--password", "p", "--digest"]."""
        self.clip = clip
        self.port = port
        self.url = f"rtsp://127.0.0.1:{port}/cam"
        self.auth = auth or []
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        script = Path(__file__).with_name("rtsp_server.py")
        self._process = subprocess.Popen(
            [
                SYSTEM_PYTHON,
                str(script),
                "--port",
                str(self.port),
                "--file",
                str(self.clip),
                *self.auth,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if "READY" not in line:
            self.stop()
            raise RuntimeError(f"RTSP server did not start: {line!r}")

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing flows (a stalled camera)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            for stream in (self._process.stdout, self._process.stderr):
                if stream is not None:
                    stream.close()
            self._process = None


@pytest.fixture
def rtsp_server(rtsp_clip: Path) -> Iterator[RtspServer]:
    probe = subprocess.run(
        [
            SYSTEM_PYTHON,
            "-c",
            "import gi; gi.require_version('GstRtspServer', '1.0');"
            "from gi.repository import GstRtspServer",
        ],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        skip_or_fail(
            "GStreamer's RTSP server is not available to the system Python "
            "(apt-get install gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi "
            "gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)"
        )
    server = RtspServer(rtsp_clip, free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def tiny_clip_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random CLIP saved as a state dict, loadable through the real loader."""
    import torch
    from clip.model import CLIP

    torch.manual_seed(0)
    model = CLIP(
        embed_dim=32,
        image_resolution=32,
        vision_layers=1,
        vision_width=64,
        vision_patch_size=16,
        context_length=77,
        vocab_size=49408,
        transformer_width=64,
        transformer_heads=1,
        transformer_layers=1,
    )
    path = tmp_path_factory.mktemp("weights") / "tiny-clip.pt"
    torch.save(model.state_dict(), path)
    return path


# ---------------------------------------------------------------------------- service


@pytest.fixture(scope="session")
def red_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 s grey clip with a red square (the fake encoder's "crash") from 2 s to 6 s."""
    from tests.fakes import write_red_square_clip

    path = tmp_path_factory.mktemp("clips") / "crash.mp4"
    write_red_square_clip(str(path))
    return path


class NatsServer:
    """A private nats-server with JetStream on file storage, that tests can kill and
    restart on the same port and directory."""

    BINARY = "/usr/sbin/nats-server"

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [self.BINARY, "-js", "-sd", str(self.directory), "-a", "127.0.0.1",
             "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nats-server did not listen on {self.port}")

    def stop(self, kill: bool = True) -> None:
        if self._process is not None:
            if kill:
                self._process.kill()
            else:
                self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    if not Path(NatsServer.BINARY).is_file():
        skip_or_fail(f"{NatsServer.BINARY} is not installed (apt-get install nats-server)")
    server = NatsServer(tmp_path / "jetstream")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def service_settings(
    tmp_path: Path, database_url: str, sources: list[str], loop: bool = False, **extra: Any
) -> Settings:
    """Settings for a test `Service`: its own data and media dirs and a free API port."""
    sections: dict[str, Any] = {
        "cameras": cameras_from_sources(sources, loop=loop),
        "storage": {"database_url": database_url, "data_dir": str(tmp_path / "data")},
        "media": {"dir": str(tmp_path / "media")},
        "detector": {"cooldown_s": 2.0},
        "api": {"port": free_port()},
    }
    for key, value in extra.items():
        sections[key] = value if key == "cameras" else {**sections.get(key, {}), **value}
    return load_settings(None, **sections)
