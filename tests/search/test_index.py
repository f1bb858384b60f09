"""The search index against brute force: exact where the filters leave few rows, the
graph (recall, not equality) where they leave many, filters always honoured, removed
rows never returned, late rows merged into time order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hazardwatch.search.index import VectorIndex

DIM = 16


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    rows = rng.standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def brute(
    rows: dict[int, tuple[str, float, np.ndarray]],
    query: np.ndarray,
    cameras: list[str] | None,
    since: float | None,
    until: float | None,
) -> dict[int, float]:
    """Every admissible id's similarity, as the index computes it (float16 rows)."""
    out = {}
    for i, (camera, ts, vector) in rows.items():
        if cameras is not None and camera not in cameras:
            continue
        if (since is not None and ts < since) or (until is not None and ts >= until):
            continue
        out[i] = float(vector.astype(np.float16).astype(np.float32) @ query)
    return out


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    batches=st.lists(st.integers(1, 60), min_size=1, max_size=4),
    k=st.integers(1, 20),
    filtered=st.sampled_from(["none", "camera", "time", "both"]),
)
def test_exact_answers_are_the_brute_force_top_k_within_the_filters(
    seed: int, batches: list[int], k: int, filtered: str
) -> None:
    rng = np.random.default_rng(seed)
    index = VectorIndex(DIM)
    rows: dict[int, tuple[str, float, np.ndarray]] = {}
    next_id = 0
    for n in batches:  # batches out of time order, with repeated times
        camera = str(rng.choice(["gate", "yard", "dock"]))
        ts = rng.integers(0, 50, n).astype(float)
        vectors = unit(rng, n)
        ids = list(range(next_id, next_id + n))
        next_id += n
        index.add(camera, ids, ts.tolist(), vectors)
        rows.update({i: (camera, t, v) for i, t, v in zip(ids, ts, vectors, strict=True)})
    query = unit(rng, 1)[0]
    cameras = ["gate", "dock"] if filtered in ("camera", "both") else None
    since, until = (10.0, 30.0) if filtered in ("time", "both") else (None, None)
    hits = index.search(query, k, cameras=cameras, since=since, until=until)
    admissible = brute(rows, query, cameras, since, until)
    assert len(hits) == min(k, len(admissible))
    assert all(h.id in admissible for h in hits)  # the filters hold
    for hit in hits:
        camera, ts, _ = rows[hit.id]
        assert (hit.camera, hit.ts) == (camera, ts)
        assert hit.similarity == pytest.approx(admissible[hit.id], abs=2e-3)
    best = sorted(admissible.values(), reverse=True)[:k]
    assert [h.similarity for h in hits] == pytest.approx(best, abs=2e-3)
    assert index.search(query, k, cameras=["nowhere"]) == []


def clustered(rng: np.random.Generator, n: int, sights: int = 40) -> np.ndarray:
    centres = unit(rng, sights, 64)
    rows = centres[rng.integers(0, sights, n)] + rng.standard_normal((n, 64)) * 0.06
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_the_graph_answers_broad_queries_with_high_recall_and_filters_held() -> None:
    rng = np.random.default_rng(5)
    index = VectorIndex(64, exact_rows=0, graph_rows=500)  # every query goes to the graphs
    vectors = clustered(rng, 3000)
    cameras = np.where(np.arange(3000) % 2 == 0, "gate", "yard")
    ts = np.arange(3000, dtype=float)
    for camera in ("gate", "yard"):
        mine = np.flatnonzero(cameras == camera)
        index.add(camera, mine.tolist(), ts[mine].tolist(), vectors[mine])
    recalls = []
    for query in clustered(rng, 20):
        truth = np.argsort(-(vectors.astype(np.float16).astype(np.float32) @ query))[:20]
        found = index.search(query, 20)
        recalls.append(len({h.id for h in found} & set(truth.tolist())) / 20)
        window = index.search(query, 20, since=1000.0, until=1300.0)  # 10 % of the rows
        assert len(window) == 20 and all(1000 <= h.ts < 1300 for h in window)
        one = index.search(query, 5, cameras=["yard"], since=2990.0)  # 5 rows: exact fallback
        assert sorted(h.id for h in one) == [2991, 2993, 2995, 2997, 2999]
    assert np.mean(recalls) >= 0.95


def test_removed_rows_are_never_returned_from_the_scan_or_the_graph() -> None:
    rng = np.random.default_rng(9)
    for graph_rows in (10**9, 100):  # without graphs, and with them
        index = VectorIndex(64, exact_rows=0, graph_rows=graph_rows)
        vectors = clustered(rng, 600)
        index.add("gate", list(range(600)), list(np.arange(600.0)), vectors)
        query = vectors[7]
        assert index.search(query, 1)[0].id == 7
        assert index.remove([7, 8, 9, 12345]) == 3
        assert len(index) == 597
        assert all(h.id not in (7, 8, 9) for h in index.search(query, 50))
        assert index.remove(range(600)) == 597
        assert len(index) == 0 and index.cameras() == []


def test_late_rows_are_merged_into_time_order() -> None:
    index = VectorIndex(DIM)
    rng = np.random.default_rng(1)
    index.add("gate", [1, 2], [10.0, 20.0], unit(rng, 2))
    index.add("gate", [3], [15.0], unit(rng, 1))  # a late keyframe
    found = index.search(unit(rng, 1)[0], 3, since=12.0, until=21.0)
    assert sorted((h.id, h.ts) for h in found) == [(2, 20.0), (3, 15.0)]


@pytest.mark.parametrize("graph_rows", [10**9, 2])
def test_a_row_delivered_again_is_held_once(graph_rows: int) -> None:
    rng = np.random.default_rng(2)
    index = VectorIndex(DIM, exact_rows=0, graph_rows=graph_rows)
    vectors = unit(rng, 3)
    index.add("gate", [1, 2, 3], [1.0, 2.0, 3.0], vectors)
    index.add("gate", [3, 4, 4], [3.0, 4.0, 4.0], unit(rng, 3))  # 3 again; 4 twice
    assert len(index) == 4
    assert [h.id for h in index.search(vectors[2], 4)].count(3) == 1


def test_a_batch_whose_parts_disagree_is_refused() -> None:
    with pytest.raises(ValueError, match="2 ids, 1 times and 2 vectors"):
        VectorIndex(DIM).add("gate", [1, 2], [1.0], np.zeros((2, DIM)))
