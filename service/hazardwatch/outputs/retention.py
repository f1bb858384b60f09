"""Media retention: snapshots and clips are deleted by age, then oldest-first by total size.

Event rows stay (they are small and the history matters); their links to deleted files are
cleared (`on_deleted`), so neither the API nor Grafana offers media that is gone. Files
being written (hidden `.part` files) are left alone unless they are a day old — the
remains of a crash.

Full-rate recording segments (`segments/<camera>/<start>.mp4`) have their own age limit
(`recording.keep_s`, far shorter than event media), count towards the size cap like any
other file, and are not event media: no link is cleared for them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hazardwatch.capture.recorder import SEGMENT_SUFFIX, SEGMENTS_DIR
from hazardwatch.lifecycle import Periodic
from hazardwatch.metrics import Metrics

log = logging.getLogger(__name__)
MEDIA_SUFFIXES = (".jpg", SEGMENT_SUFFIX, ".mp4")  # snapshots, segments, clips
STALE_PART_S = 86_400.0


@dataclass(frozen=True, slots=True)
class SweepResult:
    deleted_age: int
    deleted_size: int
    bytes_left: int
    deleted: tuple[str, ...] = ()  # media paths removed, relative to the media dir


def sweep(
    media_dir: Path,
    max_age_s: float,
    max_bytes: int,
    now: float | None = None,
    segment_max_age_s: float = 0.0,
) -> SweepResult:
    """One pass; `max_age_s`, `max_bytes` or `segment_max_age_s` of 0 switch that limit off."""
    now = time.time() if now is None else now
    segments = media_dir / SEGMENTS_DIR
    files: list[tuple[float, int, Path]] = []
    deleted_age = 0
    deleted: list[str] = []
    if not media_dir.is_dir():
        return SweepResult(0, 0, 0)
    for path in media_dir.rglob("*"):
        if path.suffix not in MEDIA_SUFFIXES or not path.is_file():
            continue
        try:
            st = path.stat()
        except OSError:
            continue  # removed meanwhile
        age = now - st.st_mtime
        if path.name.startswith("."):
            if age > STALE_PART_S:
                path.unlink(missing_ok=True)
                deleted_age += 1
            continue
        segment = path.is_relative_to(segments)
        limit = segment_max_age_s if segment else max_age_s
        if limit and age > limit:
            path.unlink(missing_ok=True)
            deleted_age += 1
            if not segment:
                deleted.append(path.relative_to(media_dir).as_posix())
            continue
        files.append((st.st_mtime, st.st_size, path))
    total = sum(size for _, size, _ in files)
    deleted_size = 0
    if max_bytes:
        files.sort()
        for _, size, path in files:
            if total <= max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
            deleted_size += 1
            if not path.is_relative_to(segments):
                deleted.append(path.relative_to(media_dir).as_posix())
    return SweepResult(deleted_age, deleted_size, total, tuple(deleted))


class MediaJanitor(Periodic):
    """Runs `sweep` every `interval_s` on its own thread."""

    def __init__(
        self,
        media_dir: Path,
        retention_days: float,
        max_size_gb: float,
        *,
        interval_s: float = 300.0,
        metrics: Metrics | None = None,
        on_deleted: Callable[[list[str]], object] | None = None,
        segment_keep_s: float = 0.0,
    ) -> None:
        """`on_deleted` hears the media paths each sweep removed (to clear their links)."""
        super().__init__(interval_s, "media-janitor")
        self.on_deleted = on_deleted
        self.segment_keep_s = segment_keep_s
        self.media_dir = media_dir
        self.max_age_s = retention_days * 86_400
        self.max_bytes = int(max_size_gb * 1024**3)
        self.metrics = metrics

    def run_once(self) -> SweepResult:
        result = sweep(
            self.media_dir,
            self.max_age_s,
            self.max_bytes,
            segment_max_age_s=self.segment_keep_s,
        )
        if result.deleted_age or result.deleted_size:
            log.info(
                "media retention: %d file(s) past age, %d over the size cap removed; %.1f MB left",
                result.deleted_age,
                result.deleted_size,
                result.bytes_left / 1e6,
            )
        if self.metrics is not None:
            self.metrics.media_deleted.labels("age").inc(result.deleted_age)
            self.metrics.media_deleted.labels("size").inc(result.deleted_size)
            self.metrics.media_bytes.set(result.bytes_left)
        if result.deleted and self.on_deleted is not None:
            try:
                self.on_deleted(list(result.deleted))
            except Exception:  # the database may be down: the links go at the next sweep
                log.exception("links to %d removed media file(s) not cleared", len(result.deleted))
        return result

    def tick(self) -> None:
        try:
            self.run_once()
        except OSError as exc:
            log.error("media retention sweep failed: %s", exc)
