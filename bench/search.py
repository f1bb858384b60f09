"""Benchmark: which vector index for search over stored keyframes (issue 26).

N unit vectors of 512 dimensions (CLIP ViT-B/32's embedding size), float16 as stored,
over 20 cameras and 30 days, inserted in time order with the cameras interleaved (as a
live service adds them). The vectors are clustered (2,000 sights, each vector a sight
plus noise), not uniform: uniform random vectors in 512 dimensions are a worst case no
camera produces, and make every graph index look worse than it is.

Candidates, each asked for the k = 50 nearest by inner product:

- `numpy`: exact. One float16 array per camera, rows in time order, so a camera filter
  is one array and a time filter a slice (binary search); scored in float32 chunks.
  `numpy-f32`: the same with the rows kept as float32 (twice the memory).
- `usearch-exact`: the same float16 partitions scanned by usearch's exact (brute-force,
  float16 SIMD) search; a delete compacts the partition.
- `faiss-hnsw`: one `IndexHNSWFlat` (M = 32, efSearch 128), filters as an id bitmap
  (`IDSelectorBitmap`), deletes as the same bitmap (HNSW cannot remove).
- `usearch`: one HNSW index per camera (float16, M = 16, expansion 128); a time filter
  is applied to an over-fetched result, all cameras merge the per-camera results.
- `hybrid`: usearch's graphs for a broad query, the exact float16 scan when the filters
  leave at most 200,000 rows.
- `hazardwatch`: what the service runs, `hazardwatch.search.index.VectorIndex` (the
  hybrid, with its graphs grown as rows arrive in batches of 1,000).
- `sqlite-vec`: a `vec0` table with the camera as partition key and the time as a
  metadata column (exact scan inside SQLite).

For each: insert cost per vector, query p50/p95 for no filter, one camera, and one camera
over 7 days, recall@50 against exact search, resident memory, and the same queries after
10 % of the vectors are deleted. Targets (issue 26): p95 <= 100 ms at 1 M vectors with
filters, recall@50 >= 0.95, insert <= 0.2 ms per vector.

    python bench/search.py [--sizes 100000,1000000] [--only numpy,usearch] [--json]

Needs `pip install faiss-cpu usearch sqlite-vec` (and `pysqlite3-binary` where Python's
sqlite3 cannot load extensions) for those candidates (a missing one is
reported and skipped). The vectors are synthetic: the figures are costs, not quality.
"""

from __future__ import annotations

import argparse
import gc
import json
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from procs import cpu_flags

DIM = 512
K = 50
CAMERAS = 20
DAYS = 30
SIGHTS = 2000
QUERIES = 50
CHUNK = 65_536  # rows scored at once by the exact search (float32 working set: 128 MiB)

F16 = npt.NDArray[np.float16]
F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass
class Data:
    vectors: F16  # [n, DIM], unit length
    camera: npt.NDArray[np.int16]
    ts: I64  # seconds
    queries: F32
    query_camera: list[int]
    query_since: list[int]


def make_data(n: int, seed: int = 7) -> Data:
    rng = np.random.default_rng(seed)
    sights = rng.standard_normal((SIGHTS, DIM), dtype=np.float32)
    sights /= np.linalg.norm(sights, axis=1, keepdims=True)
    vectors = np.empty((n, DIM), np.float16)
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        noise = rng.standard_normal((m, DIM), dtype=np.float32) * np.float32(0.5 / np.sqrt(DIM))
        rows = sights[rng.integers(0, SIGHTS, m)] + noise
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        vectors[start : start + m] = rows
    ts = np.sort(rng.integers(0, DAYS * 86_400, n)).astype(np.int64)
    camera = rng.integers(0, CAMERAS, n).astype(np.int16)
    queries = sights[rng.integers(0, SIGHTS, QUERIES)] + rng.standard_normal(
        (QUERIES, DIM), dtype=np.float32
    ) * np.float32(0.3 / np.sqrt(DIM))
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return Data(
        vectors,
        camera,
        ts,
        queries.astype(np.float32),
        [int(c) for c in rng.integers(0, CAMERAS, QUERIES)],
        [int(s) for s in rng.integers(0, (DAYS - 7) * 86_400, QUERIES)],
    )


@dataclass(frozen=True)
class Query:
    vector: F32
    camera: int | None
    since: int | None
    until: int | None


def queries_for(data: Data, kind: str) -> list[Query]:
    out = []
    for i, vector in enumerate(data.queries):
        camera = data.query_camera[i] if kind != "all cameras" else None
        since = data.query_since[i] if kind == "one camera, 7 days" else None
        until = since + 7 * 86_400 if since is not None else None
        out.append(Query(vector, camera, since, until))
    return out


KINDS = ("all cameras", "one camera", "one camera, 7 days")


class Candidate:
    name = ""

    def insert(self, data: Data) -> None:
        raise NotImplementedError

    def search(self, query: Query) -> I64:
        """The ids (row numbers in `data`) of the K best, best first."""
        raise NotImplementedError

    def delete(self, ids: I64) -> None:
        raise NotImplementedError


class Exact(Candidate):
    """Per camera, float16 rows in time order; scored in float32 chunks."""

    name = "numpy"

    def insert(self, data: Data) -> None:
        self.parts: dict[int, tuple[F16, I64, I64]] = {}
        self.alive: dict[int, npt.NDArray[np.bool_]] = {}
        for c in range(CAMERAS):
            rows = np.flatnonzero(data.camera == c)
            self.parts[c] = (np.ascontiguousarray(data.vectors[rows]), data.ts[rows], rows)
            self.alive[c] = np.ones(len(rows), bool)

    def slices(self, query: Query) -> Iterator[tuple[int, int, int]]:
        """(camera, first row, end row) of each partition the filters leave."""
        for c in range(CAMERAS) if query.camera is None else [query.camera]:
            ts = self.parts[c][1]
            lo, hi = 0, len(ts)
            if query.since is not None:
                lo = int(np.searchsorted(ts, query.since, "left"))
                hi = int(np.searchsorted(ts, query.until, "left"))
            if hi > lo:
                yield c, lo, hi

    def search(self, query: Query) -> I64:
        best_ids: list[I64] = []
        best_scores: list[F32] = []
        for c, lo, hi in self.slices(query):
            vectors, _, ids = self.parts[c]
            for start in range(lo, hi, CHUNK):
                end = min(hi, start + CHUNK)
                scores = vectors[start:end].astype(np.float32) @ query.vector
                scores[~self.alive[c][start:end]] = -np.inf
                top = _top(scores, K)
                best_ids.append(ids[start:end][top])
                best_scores.append(scores[top])
        scores = np.concatenate(best_scores)
        order = _top(scores, K)
        return np.concatenate(best_ids)[order]

    def delete(self, ids: I64) -> None:
        for c, (_, _, rows) in self.parts.items():
            self.alive[c][np.isin(rows, ids)] = False


class ExactF32(Exact):
    """The same, the rows kept as float32: twice the memory, no conversion per query."""

    name = "numpy-f32"

    def insert(self, data: Data) -> None:
        super().insert(data)
        self.parts = {
            c: (vectors.astype(np.float32), ts, ids)  # type: ignore[misc]
            for c, (vectors, ts, ids) in self.parts.items()
        }


class ExactSimd(Exact):
    """The same float16 partitions, scanned by usearch's exact search (float16 SIMD, no
    conversion); a delete compacts the partition (retention removes old rows in bulk)."""

    name = "usearch-exact"

    def search(self, query: Query) -> I64:
        from usearch.index import MetricKind, search

        vector = query.vector.astype(np.float16)
        keys, distances = [], []
        for c, lo, hi in self.slices(query):
            vectors, _, ids = self.parts[c]
            found = search(vectors[lo:hi], vector, K, MetricKind.IP, exact=True, threads=2)
            keys.append(ids[lo:hi][found.keys.astype(np.int64)])
            distances.append(found.distances)
        order = np.argsort(np.concatenate(distances), kind="stable")[:K]
        return np.concatenate(keys)[order]

    def delete(self, ids: I64) -> None:
        for c, (vectors, ts, rows) in list(self.parts.items()):
            keep = ~np.isin(rows, ids)
            self.parts[c] = (np.ascontiguousarray(vectors[keep]), ts[keep], rows[keep])


def _top(scores: F32, k: int) -> I64:
    if len(scores) <= k:
        return np.argsort(-scores)
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top])]


class FaissHnsw(Candidate):
    name = "faiss-hnsw"

    def insert(self, data: Data) -> None:
        import faiss

        self.faiss = faiss
        self.index = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = 64
        for start in range(0, len(data.vectors), CHUNK):
            self.index.add(data.vectors[start : start + CHUNK].astype(np.float32))
        self.camera, self.ts = data.camera, data.ts
        self.alive = np.ones(len(data.vectors), bool)

    def search(self, query: Query) -> I64:
        faiss = self.faiss
        mask = self.alive
        if query.camera is not None:
            mask = mask & (self.camera == query.camera)
        if query.since is not None:
            lo = int(np.searchsorted(self.ts, query.since))
            hi = int(np.searchsorted(self.ts, query.until))
            window = np.zeros_like(mask)
            window[lo:hi] = True
            mask = mask & window
        bits = np.packbits(mask, bitorder="little")
        params = faiss.SearchParametersHNSW(
            sel=faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
        )
        params.efSearch = 128
        _, ids = self.index.search(query.vector[None, :], K, params=params)
        return ids[0][ids[0] >= 0]

    def delete(self, ids: I64) -> None:
        self.alive[ids] = False


class USearch(Candidate):
    name = "usearch"
    OVERFETCH = 8  # a time filter keeps what falls in the window of K x this

    def insert(self, data: Data) -> None:
        from usearch.index import Index

        self.indexes = {}
        self.ts, self.camera = data.ts, data.camera
        for c in range(CAMERAS):
            rows = np.flatnonzero(data.camera == c)
            index = Index(ndim=DIM, metric="ip", dtype="f16", connectivity=16, expansion_add=64,
                          expansion_search=128)  # fmt: skip
            index.add(rows, data.vectors[rows], threads=2)
            self.indexes[c] = index

    def search(self, query: Query) -> I64:
        cameras = range(CAMERAS) if query.camera is None else [query.camera]
        count = K * self.OVERFETCH if query.since is not None else K
        keys, scores = [], []
        for c in cameras:
            found = self.indexes[c].search(query.vector, count)
            k, d = found.keys, found.distances
            if query.since is not None:
                keep = (self.ts[k] >= query.since) & (self.ts[k] < query.until)
                k, d = k[keep], d[keep]
            keys.append(k)
            scores.append(d)
        distance = np.concatenate(scores)
        order = np.argsort(distance)[:K]  # ip distance = 1 - similarity
        return np.concatenate(keys)[order].astype(np.int64)

    def delete(self, ids: I64) -> None:
        for c, index in self.indexes.items():
            index.remove(ids[self.camera[ids] == c])


class SqliteVec(Candidate):
    name = "sqlite-vec"

    def insert(self, data: Data) -> None:
        import sqlite_vec

        self.db = sqlite3.connect(":memory:")
        if not hasattr(self.db, "enable_load_extension"):  # Python built without it
            try:
                from pysqlite3 import dbapi2
            except ImportError:
                raise ImportError("extension loading", name="pysqlite3-binary") from None
            self.db = dbapi2.connect(":memory:")
        self.db.enable_load_extension(True)
        sqlite_vec.load(self.db)
        self.db.execute(
            f"CREATE VIRTUAL TABLE keyframes USING vec0(id INTEGER PRIMARY KEY, "
            f"camera INTEGER PARTITION KEY, ts INTEGER, embedding float[{DIM}] "
            f"distance_metric=cosine)"
        )
        rows = (
            (
                int(i),
                int(data.camera[i]),
                int(data.ts[i]),
                data.vectors[i].astype(np.float32).tobytes(),
            )
            for i in range(len(data.vectors))
        )
        with self.db:
            self.db.executemany("INSERT INTO keyframes VALUES (?, ?, ?, ?)", rows)

    def search(self, query: Query) -> I64:
        sql = "SELECT id FROM keyframes WHERE embedding MATCH ? AND k = ?"
        args: list[Any] = [query.vector.tobytes(), K]
        if query.camera is not None:
            sql += " AND camera = ?"
            args.append(query.camera)
        if query.since is not None:
            sql += " AND ts >= ? AND ts < ?"
            args += [query.since, query.until]
        return np.array([r[0] for r in self.db.execute(sql + " ORDER BY distance", args)], np.int64)

    def delete(self, ids: I64) -> None:
        with self.db:
            self.db.executemany("DELETE FROM keyframes WHERE id = ?", ((int(i),) for i in ids))


class Hybrid(Candidate):
    """usearch's graph per camera for a broad query, and the exact float16 scan when the
    filters leave at most `EXACT_ROWS` rows (a small graph, or a graph filtered
    afterwards, loses recall exactly there): the planner of Qdrant and Weaviate, in
    small."""

    name = "hybrid"
    EXACT_ROWS = 200_000

    def insert(self, data: Data) -> None:
        self.graph, self.exact = USearch(), ExactSimd()
        self.graph.insert(data)
        self.exact.insert(data)

    def search(self, query: Query) -> I64:
        rows = sum(hi - lo for _, lo, hi in self.exact.slices(query))
        return (self.exact if rows <= self.EXACT_ROWS else self.graph).search(query)

    def delete(self, ids: I64) -> None:
        self.graph.delete(ids)
        self.exact.delete(ids)


class Service(Candidate):
    """What the service runs: `hazardwatch.search.index.VectorIndex` (the hybrid)."""

    name = "hazardwatch"

    def insert(self, data: Data) -> None:
        from hazardwatch.search.index import VectorIndex

        self.index = VectorIndex(DIM)
        for c in range(CAMERAS):
            rows = np.flatnonzero(data.camera == c)
            for start in range(0, len(rows), 1000):  # as keyframes arrive: in batches
                batch = rows[start : start + 1000]
                self.index.add(str(c), batch.tolist(), data.ts[batch].tolist(), data.vectors[batch])

    def search(self, query: Query) -> I64:
        cameras = None if query.camera is None else [str(query.camera)]
        hits = self.index.search(
            query.vector, K, cameras=cameras, since=query.since, until=query.until
        )
        return np.array([h.id for h in hits], np.int64)

    def delete(self, ids: I64) -> None:
        self.index.remove(ids.tolist())


CANDIDATES: dict[str, Callable[[], Candidate]] = {
    "numpy": Exact,
    "numpy-f32": ExactF32,
    "usearch-exact": ExactSimd,
    "faiss-hnsw": FaissHnsw,
    "usearch": USearch,
    "sqlite-vec": SqliteVec,
    "hybrid": Hybrid,
    "hazardwatch": Service,
}


def rss_mib() -> float:
    with Path("/proc/self/status").open() as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Result:
    insert_ms_per_vector: float = 0.0
    memory_mib: float = 0.0
    queries: dict[str, dict[str, float]] = field(default_factory=dict)


def deleted_ids(n: int) -> I64:
    return np.random.default_rng(3).choice(n, n // 10, replace=False).astype(np.int64)


def measure(candidate: Candidate, data: Data, truth: dict[str, dict[str, list[I64]]]) -> Result:
    gc.collect()
    before = rss_mib()
    started = time.perf_counter()
    candidate.insert(data)
    result = Result((time.perf_counter() - started) * 1000 / len(data.vectors))
    result.memory_mib = rss_mib() - before
    for phase in ("", " after 10 % deleted"):
        if phase:
            candidate.delete(deleted_ids(len(data.vectors)))
        for kind in KINDS:
            times, recalls = [], []
            for query, expected in zip(queries_for(data, kind), truth[phase][kind], strict=True):
                started = time.perf_counter()
                found = candidate.search(query)
                times.append(time.perf_counter() - started)
                hits = len(set(found.tolist()) & set(expected.tolist()))
                recalls.append(hits / max(1, len(expected)))
            times.sort()
            result.queries[kind + phase] = {
                "p50_ms": 1000 * statistics.median(times),
                "p95_ms": 1000 * times[int(0.95 * len(times)) - 1],
                "recall_at_50": statistics.mean(recalls),
            }
    return result


def exact_truth(data: Data) -> dict[str, dict[str, list[I64]]]:
    """The exact K best of every query, before and after the deletes."""
    exact = ExactF32()
    exact.insert(data)
    truth = {"": {kind: [exact.search(q) for q in queries_for(data, kind)] for kind in KINDS}}
    exact.delete(deleted_ids(len(data.vectors)))
    truth[" after 10 % deleted"] = {
        kind: [exact.search(q) for q in queries_for(data, kind)] for kind in KINDS
    }
    return truth


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--only", default=",".join(CANDIDATES))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report: dict[str, Any] = {"cpu_flags": cpu_flags(), "dim": DIM, "k": K, "sizes": {}}
    for n in (int(s) for s in args.sizes.split(",")):
        data = make_data(n)
        truth = exact_truth(data)
        sized: dict[str, Any] = {}
        for name in args.only.split(","):
            try:
                candidate = CANDIDATES[name]()
                result = measure(candidate, data, truth)
            except ImportError as missing:
                sized[name] = {"skipped": f"not available: {missing.name}"}
                if not args.json:
                    print(f"{n:>9,} {name:<11} skipped: not available: {missing.name}")
                continue
            sized[name] = result.__dict__
            del candidate
            gc.collect()
            if not args.json:
                _print(n, name, result)
        report["sizes"][n] = sized
    if args.json:
        print(json.dumps(report, indent=1))
    return 0


def _print(n: int, name: str, r: Result) -> None:
    print(f"{n:>9,} {name:<11} insert {r.insert_ms_per_vector:.3f} ms/vector, "
          f"memory {r.memory_mib:,.0f} MiB; CPU flags {cpu_flags()}")  # fmt: skip
    for kind, m in r.queries.items():
        print(f"    {kind:<36} p50 {m['p50_ms']:>7.1f} ms  p95 {m['p95_ms']:>7.1f} ms  "
              f"recall@50 {m['recall_at_50']:.3f}")  # fmt: skip
    sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
