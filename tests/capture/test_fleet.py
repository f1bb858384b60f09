"""The camera fleet (capture/fleet.py): snapshots, the reload diff, the two-phase stop."""

from __future__ import annotations

from pathlib import Path

import pytest

from hazardwatch.capture.fleet import CameraFleet
from hazardwatch.capture.reader import CameraReader
from hazardwatch.components import camera_builder
from hazardwatch.handoff.queue import LocalQueue
from hazardwatch.records import GatedFrame
from hazardwatch.settings import CameraSettings, Settings, load_settings
from tests.fakes import write_red_square_clip
from tests.helpers import wait_for


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    write_red_square_clip(str(path), seconds=3, on=(99.0, 99.0))
    return path


def settings_with(**cameras: str) -> Settings:
    return load_settings(
        None, cameras=[{"name": n, "url": url, "loop": True} for n, url in cameras.items()]
    )


def test_a_reload_swaps_the_snapshot_and_restarts_only_what_changed(
    clip: Path, tmp_path: Path
) -> None:
    """Kept cameras keep their running reader; a changed one restarts, a removed one stops
    (and is told as closed), a new one starts (told as opened); a reader list taken before
    the reload is not changed under whoever iterates it (before: the same list was edited
    in place while the API and metrics iterated it)."""
    queue: LocalQueue[GatedFrame] = LocalQueue(1000, key=lambda g: g.frame.camera)
    first = settings_with(gate=str(clip), yard=str(clip), dock=str(clip))
    opened: list[str] = []
    closed: list[str] = []
    fleet = CameraFleet(
        camera_builder(first, queue),
        5.0,
        opened=lambda started: opened.extend(r.camera for r in started),
        closed=closed.append,
    )
    fleet.build(first.cameras)
    fleet.start()
    before = fleet.readers
    by_name = {r.camera: r for r in before}
    assert sorted(by_name) == ["dock", "gate", "yard"]
    assert wait_for(lambda: all(r.stats.frames_read for r in before), 10)
    other = tmp_path / "other.mp4"
    other.write_bytes(clip.read_bytes())
    second = settings_with(gate=str(clip), yard=str(other), pier=str(clip))
    change = fleet.reload(second.cameras, camera_builder(second, queue))
    assert before == tuple(by_name[n] for n in ("gate", "yard", "dock"))  # untouched
    now = {r.camera: r for r in fleet.readers}
    assert sorted(now) == ["gate", "pier", "yard"] and change.running == 3
    assert now["gate"] is by_name["gate"] and now["yard"] is not by_name["yard"]
    assert by_name["dock"].done and by_name["yard"].done and not by_name["gate"].done
    assert sorted(closed) == ["dock", "yard"] and sorted(opened) == ["pier", "yard"]
    assert change.removed == ["dock"] and sorted(r.camera for r in change.started) == sorted(opened)
    assert fleet.stop() == []
    assert all(r.done for r in fleet.readers)


def test_an_unusable_source_is_listed_invalid_until_a_reload_fixes_it(clip: Path) -> None:
    queue: LocalQueue[GatedFrame] = LocalQueue(100, key=lambda g: g.frame.camera)
    bad = settings_with(gate=str(clip), yard="rtsp://user:p@ss@host/stream")
    fleet = CameraFleet(camera_builder(bad, queue), 5.0)
    fleet.build(bad.cameras)
    assert [r.camera for r in fleet.readers] == ["gate"]
    assert list(fleet.invalid) == ["yard"] and "p@ss" not in fleet.invalid["yard"]
    with pytest.raises(TypeError):
        fleet.invalid["dock"] = "read-only"  # type: ignore[index]
    good = settings_with(gate=str(clip), yard=str(clip))
    fleet.reload(good.cameras, camera_builder(good, queue))
    assert sorted(r.camera for r in fleet.readers) == ["gate", "yard"] and not fleet.invalid
    assert fleet.stop() == []


def test_a_fleet_with_no_camera_is_never_done_and_a_disabled_camera_is_not_built(
    clip: Path,
) -> None:
    queue: LocalQueue[GatedFrame] = LocalQueue(100, key=lambda g: g.frame.camera)
    settings = load_settings(None, cameras=[{"name": "gate", "url": str(clip), "enabled": False}])
    built: list[CameraSettings] = []

    def build(camera: CameraSettings) -> CameraReader:
        built.append(camera)
        return camera_builder(settings, queue)(camera)

    fleet = CameraFleet(build, 5.0)
    fleet.build(settings.cameras)
    assert fleet.readers == () and not fleet.done and built == []
