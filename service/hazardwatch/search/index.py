"""The vector index of search (issue 26): stored embeddings by camera and time, the k
most similar to a query, chosen by `bench/search.py`.

Each camera's vectors are one float16 partition in time order, so a camera filter picks
partitions and a time filter is a slice found by binary search. A query the filters
narrow to at most `exact_rows` rows is answered exactly (usearch's float16 SIMD scan:
7 ms for a camera's 50,000 rows). A broader one uses a per-camera HNSW graph
(usearch), which answers 1,000,000 vectors over 20 cameras in about 30 ms at recall
0.999 where the exact scan takes 140 ms; a graph is built once its camera holds
`graph_rows` vectors. A graph cannot filter without losing recall (faiss's filtered
HNSW: 0.12 for one camera over a week), so with a time filter the graph's hits are
over-fetched and filtered, and the query falls back to the exact scan when too few
remain.

Similarity is the inner product of unit vectors (cosine), -1 to 1. The index holds
what it is given and nothing else: the stored vectors are the truth it is rebuilt from.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

import numpy as np
import numpy.typing as npt
from usearch.compiled import MetricKind
from usearch.index import Index, search

A = TypeVar("A", bound=np.ndarray)
F16 = npt.NDArray[np.float16]
F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

EXACT_ROWS = 200_000  # bench/search.py: the exact scan of this many rows takes ~25 ms
GRAPH_ROWS = 20_000  # below this a camera's exact scan is ~3 ms: no graph is worth it
OVERFETCH = 8  # a time filter on a graph keeps what falls in its window of k x this


@dataclass(frozen=True, slots=True)
class Hit:
    id: int
    camera: str
    ts: float  # seconds since the epoch
    similarity: float


class _Partition:
    """One camera's rows in time order; grown by doubling, so adding is amortised O(1)."""

    def __init__(self, dim: int) -> None:
        self.size = 0
        self.vectors: F16 = np.empty((64, dim), np.float16)
        self.ids: I64 = np.empty(64, np.int64)
        self.ts = np.empty(64, np.float64)
        self.graph: Index | None = None
        self._by_id: tuple[I64, I64] | None = None  # (ids sorted, their rows), when asked
        self.max_id = -1

    def rows_of(self, ids: I64) -> I64:
        """The rows of these ids; -1 for an id not held."""
        if self.size == 0:
            return np.full(len(ids), -1, np.int64)
        if self._by_id is None:
            order = np.argsort(self.ids[: self.size], kind="stable")
            self._by_id = (self.ids[: self.size][order], order)
        held, rows = self._by_id
        at = np.minimum(np.searchsorted(held, ids), len(held) - 1)
        found = held[at] == ids
        return np.where(found, rows[at], -1)

    def add(self, ids: I64, ts: npt.NDArray[np.float64], vectors: F16) -> None:
        n = len(ids)
        if self.size + n > len(self.ids):
            capacity = max(2 * len(self.ids), self.size + n)
            self.vectors = _grown(self.vectors, capacity)
            self.ids = _grown(self.ids, capacity)
            self.ts = _grown(self.ts, capacity)
        order = np.argsort(ts, kind="stable")
        ids, ts, vectors = ids[order], ts[order], vectors[order]
        if self.size and ts[0] < self.ts[self.size - 1]:
            # Late rows (a node's backlog): merged into place, which costs a copy.
            all_ts = np.concatenate([self.ts[: self.size], ts])
            merged = np.argsort(all_ts, kind="stable")
            self.ts[: self.size + n] = all_ts[merged]
            self.ids[: self.size + n] = np.concatenate([self.ids[: self.size], ids])[merged]
            self.vectors[: self.size + n] = np.concatenate([self.vectors[: self.size], vectors])[
                merged
            ]
        else:
            self.ts[self.size : self.size + n] = ts
            self.ids[self.size : self.size + n] = ids
            self.vectors[self.size : self.size + n] = vectors
        self.size += n
        self.max_id = max(self.max_id, int(ids.max()))
        self._by_id = None
        if self.graph is not None:
            self.graph.add(ids, vectors, threads=2 if n >= 64 else 1)  # a batch: in parallel

    def slice(self, since: float | None, until: float | None) -> tuple[int, int]:
        ts = self.ts[: self.size]
        lo = 0 if since is None else int(np.searchsorted(ts, since, "left"))
        hi = self.size if until is None else int(np.searchsorted(ts, until, "left"))
        return lo, max(lo, hi)

    def keep(self, keep: npt.NDArray[np.bool_]) -> None:
        n = int(keep.sum())
        self.vectors[:n] = self.vectors[: self.size][keep]
        self.ids[:n] = self.ids[: self.size][keep]
        self.ts[:n] = self.ts[: self.size][keep]
        self.size = n
        self.max_id = int(self.ids[:n].max()) if n else -1
        self._by_id = None


def _grown(array: A, capacity: int) -> A:
    out = np.empty((capacity, *array.shape[1:]), array.dtype)
    out[: len(array)] = array
    return cast(A, out)


class VectorIndex:
    """Unit vectors by camera and time; thread-safe (one lock: adds are small and
    searches take milliseconds)."""

    def __init__(
        self, dim: int, *, exact_rows: int = EXACT_ROWS, graph_rows: int = GRAPH_ROWS
    ) -> None:
        self.dim = dim
        self.exact_rows = exact_rows
        self.graph_rows = graph_rows
        self._parts: dict[str, _Partition] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return sum(p.size for p in self._parts.values())

    def cameras(self) -> list[str]:
        return sorted(self._parts)

    def add(
        self, camera: str, ids: Sequence[int], ts: Sequence[float], vectors: npt.ArrayLike
    ) -> I64:
        """Rows of one camera; `vectors` [n, dim], unit length (stored as float16). An id
        the camera already holds is not added again (a keyframe delivered twice). Returns
        the positions (in `ids`) of the rows added."""
        rows = np.asarray(vectors, np.float16).reshape(-1, self.dim)
        if not len(ids) == len(ts) == len(rows):
            raise ValueError(f"{len(ids)} ids, {len(ts)} times and {len(rows)} vectors")
        if not len(rows):
            return np.empty(0, np.int64)
        keys = np.asarray(ids, np.int64)
        times = np.asarray(ts, np.float64)
        _, first = np.unique(keys, return_index=True)  # an id twice in one batch: once
        with self._lock:
            part = self._parts.setdefault(camera, _Partition(self.dim))
            # A row delivered again is kept once. Ids grow with time, so only an id not
            # above the camera's highest is looked up (the lookup sorts the ids).
            maybe = keys[first] <= part.max_id
            if maybe.any():
                maybe[maybe] = part.rows_of(keys[first][maybe]) >= 0
            fresh = first[~maybe]
            if not len(fresh):
                return fresh
            part.add(keys[fresh], times[fresh], rows[fresh])
            if part.graph is None and part.size >= self.graph_rows:
                part.graph = _graph(self.dim, part)
        return fresh

    def save(self, directory: Path) -> dict[str, dict[str, int]]:
        """Every partition as files in `directory` (vectors, ids, times as .npy, the graph
        as usearch's file); what was saved, by camera: the file stem, rows, highest id."""
        directory.mkdir(parents=True, exist_ok=True)
        saved: dict[str, dict[str, int]] = {}
        with self._lock:
            for i, (camera, part) in enumerate(sorted(self._parts.items())):
                n = part.size
                np.save(directory / f"{i}.vectors.npy", part.vectors[:n])
                np.save(directory / f"{i}.ids.npy", part.ids[:n])
                np.save(directory / f"{i}.ts.npy", part.ts[:n])
                if part.graph is not None:
                    part.graph.save(str(directory / f"{i}.graph.usearch"))
                saved[camera] = {"stem": i, "rows": n, "max_id": part.max_id}
        return saved

    def restore(self, directory: Path, saved: dict[str, dict[str, int]]) -> None:
        """The partitions `save` wrote (an index that holds nothing yet); raises OSError or
        ValueError for files that are missing or do not match."""
        with self._lock:
            for camera, meta in saved.items():
                stem = directory / str(meta["stem"])
                vectors = np.load(f"{stem}.vectors.npy")
                ids = np.load(f"{stem}.ids.npy")
                ts = np.load(f"{stem}.ts.npy")
                if not len(ids) == len(ts) == len(vectors) == meta["rows"]:
                    raise ValueError(f"saved partition of {camera} does not match its manifest")
                if vectors.dtype != np.float16 or vectors.shape[1:] != (self.dim,):
                    raise ValueError(f"saved partition of {camera} is not {self.dim}-d float16")
                part = _Partition(self.dim)
                part.add(ids, ts, vectors)
                graph = Path(f"{stem}.graph.usearch")
                if graph.is_file():
                    part.graph = Index.restore(str(graph))
                    if part.graph is None or len(part.graph) != part.size:
                        raise ValueError(f"saved graph of {camera} does not match its rows")
                self._parts[camera] = part

    def sample(self, n: int, rng: np.random.Generator) -> F16:
        """At most `n` rows drawn uniformly from everything held."""
        with self._lock:
            parts = [p for p in self._parts.values() if p.size]
            total = sum(p.size for p in parts)
            if not total:
                return np.empty((0, self.dim), np.float16)
            picks = np.sort(rng.choice(total, size=min(n, total), replace=False))
            out, offset = [], 0
            for part in parts:
                mine = picks[(picks >= offset) & (picks < offset + part.size)] - offset
                out.append(part.vectors[mine])
                offset += part.size
            return np.concatenate(out)

    def ids(self) -> I64:
        """Every id held."""
        with self._lock:
            held = [p.ids[: p.size] for p in self._parts.values()]
        return np.concatenate(held) if held else np.empty(0, np.int64)

    def remove(self, ids: Iterable[int]) -> int:
        """Forget these ids (retention, a deleted keyframe); how many were held."""
        gone = np.fromiter(ids, np.int64)
        removed = 0
        with self._lock:
            for camera, part in list(self._parts.items()):
                held = np.isin(part.ids[: part.size], gone)
                count = int(held.sum())
                if not count:
                    continue
                removed += count
                if part.graph is not None:
                    part.graph.remove(part.ids[: part.size][held])
                part.keep(~held)
                if part.size == 0:
                    del self._parts[camera]
        return removed

    def search(
        self,
        query: npt.ArrayLike,
        k: int,
        *,
        cameras: Iterable[str] | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[Hit]:
        """The k most similar rows, most similar first; `since` (inclusive) and `until`
        (exclusive) bound the time."""
        vector = np.asarray(query, np.float32).reshape(self.dim)
        with self._lock:
            names = self.cameras() if cameras is None else [c for c in cameras if c in self._parts]
            slices = [(name, *self._parts[name].slice(since, until)) for name in names]
            rows = sum(hi - lo for _, lo, hi in slices)
            hits: list[Hit] = []
            for name, lo, hi in slices:
                if hi == lo:
                    continue
                part = self._parts[name]
                found = None
                if rows > self.exact_rows and part.graph is not None:
                    found = _graph_search(part, vector, k, lo, hi)
                if found is None:
                    found = _exact_search(part, vector, k, lo, hi)
                hits += [Hit(int(i), name, float(t), float(s)) for i, t, s in found]
        hits.sort(key=lambda h: -h.similarity)
        return hits[:k]


Found = list[tuple[int, float, float]]  # (id, ts, similarity)


def _exact_search(part: _Partition, vector: F32, k: int, lo: int, hi: int) -> Found:
    found = search(
        part.vectors[lo:hi], vector.astype(np.float16), min(k, hi - lo), MetricKind.IP,
        exact=True, threads=1,
    )  # fmt: skip
    rows = lo + found.keys.astype(np.int64)
    return [
        (int(part.ids[r]), float(part.ts[r]), 1.0 - float(d))
        for r, d in zip(rows, found.distances, strict=True)
    ]


def _graph_search(part: _Partition, vector: F32, k: int, lo: int, hi: int) -> Found | None:
    """The graph's hits within rows lo..hi; None when too few fall there (the caller
    scans exactly)."""
    assert part.graph is not None
    whole = lo == 0 and hi == part.size
    count = min(k if whole else k * OVERFETCH, part.size)
    found = part.graph.search(vector.astype(np.float16), count)
    keys = found.keys.astype(np.int64)
    rows = part.rows_of(keys)
    keep = (rows >= lo) & (rows < hi)
    out = [
        (int(key), float(part.ts[row]), 1.0 - float(distance))
        for key, row, distance in zip(keys[keep], rows[keep], found.distances[keep], strict=True)
    ]
    if len(out) < min(k, hi - lo):
        return None
    return out[:k]


def _graph(dim: int, part: _Partition) -> Index:
    graph = Index(
        ndim=dim, metric=MetricKind.IP, dtype="f16", connectivity=16, expansion_add=64,
        expansion_search=128,
    )  # fmt: skip
    graph.add(part.ids[: part.size], part.vectors[: part.size], threads=2)
    return graph
