from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from hazardwatch.app import Service, cameras_from_sources
from hazardwatch.settings import load_settings
from hazardwatch.storage.engine import create_engine
from hazardwatch.storage.repository import Repository
from tests.fakes import FakeEncoder, write_red_square_clip


@pytest.fixture(scope="module")
def red_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clips") / "crash.mp4"
    write_red_square_clip(str(path))
    return path


def run_service(tmp_path: Path, database_url: str, sources: list[str]) -> tuple[Service, object]:
    settings = load_settings(
        None,
        cameras=cameras_from_sources(sources, loop=False),
        storage={"database_url": database_url, "data_dir": str(tmp_path / "data")},
        media={"dir": str(tmp_path / "media")},
        detector={"cooldown_s": 2.0},
    )
    service = Service(settings, encoder_factory=lambda s: FakeEncoder())
    return service, service.run()


def test_run_turns_a_crash_clip_into_an_event_with_snapshot(
    tmp_path: Path, database_url: str, red_clip: Path
) -> None:
    _, summary = run_service(tmp_path, database_url, [str(red_clip)])
    assert summary.frames_read == 100 and summary.frames_scored > 10
    engine = create_engine(database_url)
    events = Repository(engine).list_events()
    assert len(events) == 1, events
    event = events[0]
    assert event.class_name == "traffic_accident" and event.severity == "critical"
    assert event.status == "closed" and event.ended_at is not None
    assert event.model_name == "fake-crash-detector" and event.prompt_bank_version
    # The square is in view from 2 s to 6 s of the clip; the event lies within it, give or
    # take smoothing and the minimum duration.
    duration = (event.ended_at - event.started_at).total_seconds()
    assert 2.0 <= duration <= 6.5
    assert event.peak_score > 0.9
    assert event.snapshot_path is not None
    snapshot = tmp_path / "media" / event.snapshot_path
    assert snapshot.read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG
    with engine.connect() as conn:
        scores = conn.execute(sa.text("SELECT COUNT(*) FROM scores")).scalar_one()
        cameras = conn.execute(sa.text("SELECT name, source_kind FROM cameras")).all()
    assert scores > 0 and [tuple(c) for c in cameras] == [("crash", "file")]
    assert event.started_at.tzinfo is not None
    engine.dispose()


def test_one_bad_camera_does_not_stop_the_others(tmp_path: Path, red_clip: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hw.db'}"
    _, summary = run_service(tmp_path, url, [str(red_clip), "rtsp://", str(tmp_path / "nope.mp4")])
    assert summary.cameras == 2  # the malformed URL is skipped, the missing file ends
    assert summary.frames_read == 100


@pytest.fixture
def tiny_weights(tiny_clip_weights: Path) -> Path:
    return tiny_clip_weights


def _cli(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAZARDWATCH_")}
    return subprocess.Popen(
        [sys.executable, "-m", "hazardwatch", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_cli_run_to_the_end_of_a_file(tmp_path: Path, tiny_weights: Path, red_clip: Path) -> None:
    process = _cli(["run", "--source", str(red_clip), "--model", str(tiny_weights)], tmp_path)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "1 camera(s), 100 frames read" in out
    assert (tmp_path / "data" / "hazardwatch.db").is_file()


def test_cli_run_stops_cleanly_on_sigterm(
    tmp_path: Path, tiny_weights: Path, red_clip: Path
) -> None:
    process = _cli(
        ["run", "--source", str(red_clip), "--loop", "--model", str(tiny_weights)], tmp_path
    )
    time.sleep(8)  # model load, migrations, a few seconds of frames
    assert process.poll() is None, process.communicate()[1]
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert time.monotonic() - sent < 10
    assert "frames read" in out


def test_cli_run_with_missing_weights_is_a_clear_error(tmp_path: Path, red_clip: Path) -> None:
    process = _cli(["run", "--source", str(red_clip), "--model", "ViT-B/32"], tmp_path)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1
    assert "ViT-B-32.pt" in err and "--model" in err and "Traceback" not in err
