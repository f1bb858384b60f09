from __future__ import annotations

import os
import time
from pathlib import Path

from hazardwatch.metrics import Metrics
from hazardwatch.outputs.retention import MediaJanitor, sweep


def put(root: Path, name: str, size: int, age_s: float, now: float) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (now - age_s, now - age_s))
    return path


def test_age_then_size_oldest_first(tmp_path: Path) -> None:
    now = time.time()
    old = put(tmp_path, "cam/old.jpg", 100, 10 * 86_400, now)
    a = put(tmp_path, "cam/a.mp4", 400, 3000, now)
    b = put(tmp_path, "cam/b.jpg", 400, 2000, now)
    c = put(tmp_path, "other/c.jpg", 400, 1000, now)
    keep = put(tmp_path, "cam/notes.txt", 10_000, 20 * 86_400, now)  # not media: untouched
    part = put(tmp_path, "cam/.x.part.mp4", 400, 60, now)  # being written: untouched
    result = sweep(tmp_path, max_age_s=7 * 86_400, max_bytes=900, now=now)
    assert (result.deleted_age, result.deleted_size, result.bytes_left) == (1, 1, 800)
    assert not old.exists() and not a.exists() and b.exists() and c.exists()
    assert keep.exists() and part.exists()


def test_segments_have_their_own_age_and_count_towards_the_cap(tmp_path: Path) -> None:
    now = time.time()
    clip = put(tmp_path, "cam/e1.mp4", 100, 3 * 3600, now)  # event media: days to live
    old_seg = put(tmp_path, "segments/cam/1700000000.mp4", 100, 2 * 3600, now)
    new_seg = put(tmp_path, "segments/cam/1700007000.mp4", 100, 60, now)
    result = sweep(tmp_path, 7 * 86_400, 0, now=now, segment_max_age_s=3600)
    assert not old_seg.exists() and new_seg.exists() and clip.exists()
    assert result.deleted_age == 1 and result.deleted == ()  # no event links to clear
    # Over the size cap the oldest file goes first, segment or not.
    older_seg = put(tmp_path, "segments/cam/1699990000.mp4", 100, 4 * 3600, now)
    result = sweep(tmp_path, 0, 100, now=now)
    assert not older_seg.exists() and not clip.exists() and new_seg.exists()
    assert result.deleted == ("cam/e1.mp4",)


def test_limits_of_zero_keep_everything_and_stale_parts_go(tmp_path: Path) -> None:
    now = time.time()
    f = put(tmp_path, "cam/a.jpg", 1000, 400 * 86_400, now)
    stale = put(tmp_path, "cam/.y.part.mp4", 10, 2 * 86_400, now)
    assert sweep(tmp_path, 0, 0, now=now).deleted_age == 1
    assert f.exists() and not stale.exists()


def test_janitor_reports_metrics(tmp_path: Path) -> None:
    put(tmp_path, "cam/a.jpg", 1000, 0, time.time())
    metrics = Metrics()
    MediaJanitor(tmp_path, 14, 10, metrics=metrics).run_once()
    assert "hazardwatch_media_bytes 1000.0" in metrics.render().decode()


def test_removed_files_are_listed_and_their_links_cleared(
    tmp_path: Path, database_url: str
) -> None:
    from datetime import UTC, datetime

    from hazardwatch.records import EventRecord
    from hazardwatch.storage import migrate
    from hazardwatch.storage.engine import create_engine
    from hazardwatch.storage.repository import Repository

    now = time.time()
    media = tmp_path / "media"
    put(media, "cam/e1.jpg", 100, 30 * 86_400, now)
    put(media, "cam/e1.mp4", 100, 30 * 86_400, now)
    put(media, "cam/e2.jpg", 100, 60, now)
    put(media, "cam/.e3.part.mp4", 10, 60, now)
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    repo = Repository(engine)
    t = datetime.now(UTC)
    for uuid in ("e1", "e2"):
        repo.upsert_event(
            EventRecord(uuid, "cam", "fire_smoke", "critical", "closed", t, t, 0.9, 0.8,
                        snapshot_path=f"cam/{uuid}.jpg",
                        clip_path=f"cam/{uuid}.mp4" if uuid == "e1" else None)
        )  # fmt: skip
    heard: list[list[str]] = []

    def forget(paths: list[str]) -> int:
        heard.append(sorted(paths))
        return repo.forget_media(paths)

    result = MediaJanitor(media, 14, 10, on_deleted=forget).run_once()
    assert sorted(result.deleted) == ["cam/e1.jpg", "cam/e1.mp4"]
    assert heard == [["cam/e1.jpg", "cam/e1.mp4"]]
    e1, e2 = repo.get_event("e1"), repo.get_event("e2")
    engine.dispose()
    assert e1 is not None and e1.snapshot_path is None and e1.clip_path is None
    assert e2 is not None and e2.snapshot_path == "cam/e2.jpg"


def test_a_failing_link_cleanup_does_not_stop_the_sweep(tmp_path: Path) -> None:
    put(tmp_path, "cam/a.jpg", 10, 30 * 86_400, time.time())

    def broken(paths: list[str]) -> None:
        raise RuntimeError("database down")

    result = MediaJanitor(tmp_path, 14, 10, on_deleted=broken).run_once()
    assert result.deleted_age == 1
