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
