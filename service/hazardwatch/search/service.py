"""Search over the stored keyframes (issue 26): the vector index of one events service,
rebuilt from the stored rows at start, fed by the writer as keyframes are stored, pruned
when retention deletes their thumbnails, and asked by the API.

What a score means. A raw cosine between a CLIP text and a CLIP image is about 0.2–0.35
whatever matches, and its spread differs from query to query, so raw numbers cannot be
compared across queries (Frigate normalises by running statistics for the same reason).
Each query is measured against a fixed random sample of the stored keyframes (up to
`REFERENCE_ROWS`, reservoir-sampled as they arrive): `score` is how far a result is above
that query's typical stored frame, in units of the typical frames' spread — the median
and the scaled median absolute deviation, so a matching minority (a sight in a tenth of
the footage) moves neither much. 0 is an ordinary frame; 3 and more stand out as
strongly as a normal variable's one-in-700. The same number means the same rarity for any
query, text or image, on any model.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from hazardwatch.metrics import Metrics
from hazardwatch.records import KeyframeBatch
from hazardwatch.search.index import Hit, VectorIndex
from hazardwatch.storage.keyframes import KeyframeTable, StoredKeyframe

log = logging.getLogger(__name__)
F32 = npt.NDArray[np.float32]
REFERENCE_ROWS = 4096
LOAD_BATCH = 10_000
# A catch-up reads again this many ids below the last highest: an insert that commits a
# moment after a later id (another instance's batch). At the default of one keyframe a
# camera every 10 s, 1,000 cameras store at most 100 a second: seconds of late commits
# are covered without re-reading much every round.
CATCH_UP_MARGIN_IDS = 1_000
MANIFEST = "manifest.json"
# A cosine spread below this is numerical noise (identical frames): scores stay finite.
MIN_SPREAD = 0.01


@dataclass(frozen=True, slots=True)
class Match:
    """A keyframe that matched, with its similarity (cosine) and score (see the module)."""

    keyframe: StoredKeyframe
    similarity: float
    score: float


class KeyframeSearch:
    """The index and what it answers; `start` loads the stored keyframes of `model_name`
    on a thread of its own (searches answer meanwhile, over what is loaded: `loading`)."""

    def __init__(
        self,
        table: KeyframeTable,
        model_name: str,
        metrics: Metrics | None = None,
        directory: Path | None = None,
    ):
        """`directory`: where the index is saved at a clean stop and read back at start
        (None: always rebuilt from the rows)."""
        self.table = table
        self.model_name = model_name
        self.metrics = metrics
        self.directory = directory
        self.restored = False  # this start read the saved index
        self.index: VectorIndex | None = None  # made when the dimension is known
        self.loading = True
        self.loaded = 0
        self._sizes: dict[str, tuple[int, int]] = {}  # camera -> (keyframes, bytes)
        self._reference: F32 | None = None
        self._seen = 0  # rows offered to the reservoir
        self._caught_up_to = 0  # the highest id read from the rows (load, catch-up)
        self._rng = np.random.default_rng(26)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._thread = threading.Thread(target=self._load, name="search-load", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop loading; a fully loaded index is saved for the next start."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return False
        if not self.loading:
            self.save()
        return True

    def save(self) -> None:
        """The index as files (written aside, then swapped in: a crash leaves the old
        ones), with a manifest naming the model and what each camera holds."""
        index, directory = self.index, self.directory
        if index is None or directory is None:
            return
        started = time.monotonic()
        fresh = directory.with_name(directory.name + ".new")
        try:
            shutil.rmtree(fresh, ignore_errors=True)
            saved = index.save(fresh)
            manifest = {"model": self.model_name, "dim": index.dim, "cameras": saved}
            (fresh / MANIFEST).write_text(json.dumps(manifest))
            old = directory.with_name(directory.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            if directory.exists():
                directory.rename(old)
            fresh.rename(directory)
            shutil.rmtree(old, ignore_errors=True)
        except OSError as exc:
            log.warning("search: the index was not saved (%s); the next start rebuilds it", exc)
            return
        log.info("search: index of %d keyframe(s) saved in %.1f s", len(index),
                 time.monotonic() - started)  # fmt: skip

    def _load(self) -> None:
        started = time.monotonic()
        try:
            after = self._restore()
            for rows in self.table.scan(
                model_name=self.model_name, batch=LOAD_BATCH, after_id=after
            ):
                if self._stop.is_set():
                    return
                self._add(rows.ids, rows.cameras, rows.ts, rows.embeddings, rows.thumbnail_bytes)
                self.loaded += len(rows.ids)
                self._caught_up_to = rows.ids[-1]
        except Exception:
            log.exception("search: loading the stored keyframes failed; search covers new ones")
        finally:
            self.loading = False
        others = self.table.count(model_name=self.model_name, other_models=True)
        log.info(
            "search: %d keyframe(s) %s in %.1f s%s",
            self.loaded,
            "read from the saved index and the rows since" if self.restored else "loaded",
            time.monotonic() - started,
            f"; {others} made by another model are not searched: run `hazardwatch reindex`"
            if others
            else "",
        )

    def _restore(self) -> int:
        """The saved index, checked against the rows: those deleted since (retention) go,
        and the scan goes on after the highest id saved. 0 (rebuild from every row) when
        there are no files, they are of another model, or they do not match the rows."""
        directory = self.directory
        if directory is None or not (directory / MANIFEST).is_file():
            return 0
        try:
            manifest = json.loads((directory / MANIFEST).read_text())
            if manifest.get("model") != self.model_name:
                log.info("search: the saved index is of %s, not %s: rebuilt from the rows",
                         manifest.get("model"), self.model_name)  # fmt: skip
                return 0
            index = VectorIndex(int(manifest["dim"]))
            saved: dict[str, dict[str, int]] = manifest["cameras"]
            index.restore(directory, saved)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("search: the saved index is unreadable (%s): rebuilt from the rows", exc)
            return 0
        highest = max((meta["max_id"] for meta in saved.values()), default=0)
        stored = self.table.ids(model_name=self.model_name, up_to=highest)
        held = index.ids()
        if len(np.setdiff1d(stored, held)):  # rows the files never had (reindexed since)
            log.info("search: the saved index misses stored keyframes: rebuilt from the rows")
            return 0
        index.remove(np.setdiff1d(held, stored).tolist())  # deleted while stopped
        with self._lock:
            self.index = index
        self._count_restored(index, highest)
        self.restored = True
        self.loaded = len(index)
        self._caught_up_to = max(highest, 0)
        return max(highest, 0)

    def _count_restored(self, index: VectorIndex, highest: int) -> None:
        """Per-camera counts and the reference sample of what was read from the files."""
        sizes = self.table.sizes(model_name=self.model_name, up_to=highest)
        with self._lock:
            self._sizes = {
                camera: (count, total + count * index.dim * 2)
                for camera, (count, total) in sizes.items()
            }
            sample = index.sample(REFERENCE_ROWS, self._rng)
            self._reference = None
            self._seen = 0
            self._sample(sample)
            self._seen = len(index)
        self._publish(sizes)

    # ------------------------------------------------------------------ feeding

    def stored(self, ids: list[int], batch: KeyframeBatch) -> None:
        """The writer stored these keyframes (a writer's keyframe listener)."""
        keep = [i for i, r in enumerate(batch.records) if r.model_name == self.model_name]
        self._add(
            [ids[i] for i in keep],
            [batch.records[i].camera for i in keep],
            [batch.records[i].ts.timestamp() for i in keep],
            [batch.records[i].embedding for i in keep],
            [batch.records[i].thumbnail_bytes for i in keep],
        )

    def catch_up(self) -> int:
        """Keyframes other processes stored since the last look (the events instances of
        the other partitions write theirs; any instance's API searches them all). Rows
        from `CATCH_UP_MARGIN_IDS` before the last look's highest id on are read again —
        an insert that committed late may hold a lower id — and a row held already counts
        once. Returns how many rows were read."""
        if self.loading:
            return 0
        after = max(0, self._caught_up_to - CATCH_UP_MARGIN_IDS)
        read = 0
        for rows in self.table.scan(model_name=self.model_name, batch=LOAD_BATCH, after_id=after):
            self._add(rows.ids, rows.cameras, rows.ts, rows.embeddings, rows.thumbnail_bytes)
            self._caught_up_to = max(self._caught_up_to, rows.ids[-1])
            read += len(rows.ids)
        return read

    def forget(self, paths: list[str]) -> int:
        """Retention removed these media files: their keyframes go, rows and vectors."""
        gone = self.table.delete_paths(paths)
        if not gone.ids:
            return 0
        if self.index is not None:
            self.index.remove(gone.ids)
        with self._lock:
            for camera, size in zip(gone.cameras, gone.thumbnail_bytes, strict=True):
                count, total = self._sizes.get(camera, (0, 0))
                self._sizes[camera] = (max(0, count - 1), max(0, total - size - self._dim_bytes))
        self._publish(set(gone.cameras))
        return len(gone.ids)

    @property
    def _dim_bytes(self) -> int:
        return 2 * (self.index.dim if self.index is not None else 512)

    def _add(
        self,
        ids: list[int],
        cameras: list[str],
        ts: list[float],
        embeddings: list[bytes],
        sizes: list[int],
    ) -> None:
        if not ids:
            return
        vectors = np.stack([np.frombuffer(e, np.float16) for e in embeddings])
        with self._lock:
            if self.index is None:
                self.index = VectorIndex(vectors.shape[1])
            index = self.index
        if vectors.shape[1] != index.dim:
            log.warning(
                "search: %d keyframe(s) of dimension %d skipped (the index holds %d)",
                len(ids),
                vectors.shape[1],
                index.dim,
            )
            return
        by_camera: dict[str, list[int]] = {}
        for row, camera in enumerate(cameras):
            by_camera.setdefault(camera, []).append(row)
        added: dict[str, list[int]] = {}  # rows held for the first time (a row stored
        for camera, rows in by_camera.items():  # again, or loaded and fed, counts once)
            fresh = index.add(camera, [ids[r] for r in rows], [ts[r] for r in rows], vectors[rows])
            added[camera] = [rows[i] for i in fresh]
        with self._lock:
            for camera, rows in added.items():
                count, total = self._sizes.get(camera, (0, 0))
                grown = sum(sizes[r] for r in rows) + len(rows) * vectors.shape[1] * 2
                self._sizes[camera] = (count + len(rows), total + grown)
            self._sample(vectors[[r for rows in added.values() for r in rows]])
        self._publish(set(by_camera))

    def _sample(self, vectors: npt.NDArray[np.float16]) -> None:
        """Reservoir sampling (algorithm R, a batch at a time): every stored row equally
        likely to be in the sample."""
        if self._reference is None:
            self._reference = np.empty((REFERENCE_ROWS, vectors.shape[1]), np.float32)
        filled = min(self._seen, REFERENCE_ROWS)
        take = min(len(vectors), REFERENCE_ROWS - filled)
        self._reference[filled : filled + take] = vectors[:take]
        rest = vectors[take:]
        if len(rest):
            # Row j (1-based, over all rows seen) replaces a random slot with chance R/j;
            # in one assignment a later row wins a slot, as it would one row at a time.
            seen = self._seen + take + np.arange(1, len(rest) + 1)
            slots = (self._rng.random(len(rest)) * seen).astype(np.int64)
            chosen = slots < REFERENCE_ROWS
            self._reference[slots[chosen]] = rest[chosen]
        self._seen += len(vectors)

    def _publish(self, cameras: Iterable[str]) -> None:
        if self.metrics is None:
            return
        for camera in cameras:
            count, total = self._sizes.get(camera, (0, 0))
            self.metrics.keyframes.labels(camera).set(count)
            self.metrics.keyframe_bytes.labels(camera).set(total)

    # ------------------------------------------------------------------ asking

    def sizes(self) -> dict[str, tuple[int, int]]:
        with self._lock:
            return dict(self._sizes)

    def search(
        self,
        query: npt.ArrayLike,
        limit: int,
        *,
        cameras: Iterable[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        exclude: Iterable[int] = (),
    ) -> list[Match]:
        """The keyframes most like `query` (a unit vector), best first."""
        index = self.index
        if index is None:
            return []
        vector = np.asarray(query, np.float32).reshape(-1)
        if vector.shape[0] != index.dim:
            raise ValueError(
                f"the query has {vector.shape[0]} dimensions and the index {index.dim}: "
                "was it embedded by another model?"
            )
        vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
        skip = set(exclude)
        hits: list[Hit] = index.search(
            vector,
            limit + len(skip),
            cameras=cameras,
            since=since.timestamp() if since is not None else None,
            until=until.timestamp() if until is not None else None,
        )
        hits = [h for h in hits if h.id not in skip][:limit]
        rows = self.table.get([h.id for h in hits])
        mean, spread = self._baseline(vector)
        return [
            Match(rows[h.id], h.similarity, (h.similarity - mean) / spread)
            for h in hits
            if h.id in rows  # deleted between the index and the rows: not offered
        ]

    def _baseline(self, vector: F32) -> tuple[float, float]:
        """The query's typical similarity over the reference sample (median) and its
        spread (1.4826 x the median absolute deviation: the standard deviation, were it
        normal), at least `MIN_SPREAD`."""
        with self._lock:
            if self._reference is None or self._seen < 2:
                return 0.0, 1.0
            reference = self._reference[: min(self._seen, REFERENCE_ROWS)]
        sims = reference @ vector
        median = float(np.median(sims))
        spread = 1.4826 * float(np.median(np.abs(sims - median)))
        return median, max(spread, MIN_SPREAD)
