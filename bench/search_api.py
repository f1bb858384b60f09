"""Benchmark: search as an operator meets it (issue 26). Stores N keyframes (default
1,000,000) of 20 cameras over 30 days in MariaDB, then measures:

- storing: keyframes per second through the writer's path (`KeyframeTable.add`, batches
  of 20 — one scored batch across cameras), and the table's bytes per keyframe;
- a first start: seconds for the service's index (`KeyframeSearch`) to load every stored
  vector from the database (and build its graphs), and its memory; the seconds to save it
  at a clean stop, and to start again from the saved files (checked against the rows);
- on the real API server: `GET /api/v1/search?q=…` over every camera, one camera, one
  camera and the last 7 days, and `POST /api/v1/search/similar?keyframe=…`, median and
  p95 of repeated requests, the query text embedded by CLIP ViT-B/32 (random weights:
  the same compute as the real model; the ranking means nothing).

Target (issue 26): "well under a second" from the words to the ranked moments over a
million keyframes.

    python bench/search_api.py [--keyframes 1000000] [--repeat 30] [--json]

MariaDB is the local one (`HAZARDWATCH_TEST_MYSQL_URL`, default root@127.0.0.1:3306); the
bench creates and drops its own database.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.helpers import serve_app

from clip_throughput import random_vit_b_32
from hazardwatch.api.app import ApiState, create_app
from hazardwatch.metrics import Metrics
from hazardwatch.records import KeyframeRecord
from hazardwatch.scoring.model import ClipEncoder
from hazardwatch.search.service import KeyframeSearch
from hazardwatch.storage.engine import create_engine
from hazardwatch.storage.migrate import upgrade
from hazardwatch.storage.models import Keyframe
from hazardwatch.storage.repository import Repository
from procs import cpu_flags
from score_rows import database

CAMERAS = [f"cam-{i:02d}" for i in range(20)]
MODEL = "ViT-B/32 (random weights)"
DIM = 512
WORDS = ["truck on fire", "a person lying on the road", "a dog on the road", "smoke",
         "a stalled car", "debris on the road", "a crash at the junction", "flooding"]  # fmt: skip


class TextOnly:
    """What the API needs of the model here: text embeddings (ViT-B/32, random weights)."""

    def __init__(self) -> None:
        self.encoder = ClipEncoder.from_model(random_vit_b_32(), MODEL, "cpu", "fp32", 1, False)
        self.model_name = MODEL

    def text(self, text: str) -> np.ndarray:
        return np.asarray(self.encoder.encode_text([text])[0], np.float32)

    def image(self, image: Any) -> np.ndarray:
        raise NotImplementedError


def vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit vectors with some structure (clustered, as footage is), float16."""
    centres = rng.standard_normal((64, DIM)).astype(np.float32)
    v = centres[rng.integers(0, 64, n)] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v.astype(np.float16)


def seed(engine: sa.Engine, repository: Repository, count: int) -> dict[str, float]:
    """`count` keyframes over 20 cameras and 30 days; the first 20,000 through the
    writer's path (timed), the rest in bulk."""
    rng = np.random.default_rng(26)
    start = datetime.now(UTC) - timedelta(days=30)
    step = timedelta(days=30) / count
    repository.ensure_cameras((c, "rtsp") for c in CAMERAS)

    def rows(lo: int, hi: int) -> list[KeyframeRecord]:
        vs = vectors(rng, hi - lo)
        return [
            KeyframeRecord(CAMERAS[i % 20], start + step * i, vs[i - lo].tobytes(),
                           f"{CAMERAS[i % 20]}/keyframes/{i}.jpg", 5000, MODEL)
            for i in range(lo, hi)
        ]  # fmt: skip

    timed = min(count, 20_000)
    records = rows(0, timed)
    began = time.perf_counter()
    for lo in range(0, timed, 20):
        repository.keyframes.add(records[lo : lo + 20])
    per_second = timed / (time.perf_counter() - began)
    for lo in range(timed, count, 5_000):
        batch = rows(lo, min(count, lo + 5_000))
        with engine.begin() as conn:
            conn.execute(
                sa.insert(Keyframe.__table__),  # type: ignore[arg-type]
                [
                    {"camera": r.camera, "ts": r.ts, "model_name": r.model_name,
                     "embedding": r.embedding, "thumbnail_path": r.thumbnail_path,
                     "thumbnail_bytes": r.thumbnail_bytes}
                    for r in batch
                ],
            )  # fmt: skip
        if lo % 100_000 == 0:
            print(f"  seeded {lo:,}", file=sys.stderr)
    with engine.connect() as conn:
        conn.execute(sa.text("ANALYZE TABLE keyframes"))
        size = conn.execute(
            sa.text(
                "SELECT data_length + index_length FROM information_schema.tables "
                "WHERE table_schema = DATABASE() AND table_name = 'keyframes'"
            )
        ).scalar_one()
    return {"store_keyframes_per_s": per_second, "table_bytes_per_keyframe": size / count}


def timed(call: Any, repeat: int) -> dict[str, float]:
    took = []
    for i in range(repeat):
        began = time.perf_counter()
        answer = call(i)
        took.append(time.perf_counter() - began)
        assert answer.status_code == 200, answer.text
    took.sort()
    return {
        "p50_ms": 1000 * statistics.median(took),
        "p95_ms": 1000 * took[min(len(took) - 1, round(0.95 * (len(took) - 1)))],
    }


def started(repository: Repository, saved: Path) -> tuple[KeyframeSearch, float]:
    """The service's index started over the stored keyframes (and `saved`), loaded."""
    search = KeyframeSearch(repository.keyframes, MODEL, directory=saved)
    began = time.perf_counter()
    search.start()
    while search.loading:
        time.sleep(0.05)
    return search, time.perf_counter() - began


def time_index(repository: Repository, count: int, saved: Path) -> tuple[dict[str, Any], Any]:
    """A first start from the rows, a clean stop (saving), a start from the saved files."""
    out: dict[str, Any] = {}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    search, out["load_s"] = started(repository, saved)
    out["load_rss_mib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert search.index is not None and len(search.index) == count
    began = time.perf_counter()
    search.stop()
    out["save_s"] = time.perf_counter() - began
    search, out["restart_from_files_s"] = started(repository, saved)
    assert search.restored and search.index is not None and len(search.index) == count
    return out, search


def time_api(
    repository: Repository, search: KeyframeSearch, count: int, repeat: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as media:
        state = ApiState(repository, Path(media), Metrics())
        embedder = TextOnly()
        state.search, state.embedder = search, embedder
        week = (datetime.now(UTC) - timedelta(days=7)).isoformat()
        with serve_app(create_app(state)) as base, httpx.Client(base_url=base) as client:

            def text(**filters: str) -> Any:
                return lambda i: client.get(
                    "/api/v1/search", params={"q": WORDS[i % len(WORDS)], **filters}
                )

            out["text_all_cameras"] = timed(text(), repeat)
            out["text_one_camera"] = timed(text(camera="cam-03"), repeat)
            out["text_one_camera_7_days"] = timed(text(camera="cam-03", since=week), repeat)
            ids = [int(i) for i in np.random.default_rng(1).integers(1, count, 64)]
            out["similar_keyframe_all_cameras"] = timed(
                lambda i: client.post("/api/v1/search/similar", params={"keyframe": ids[i]}),
                repeat,
            )
            began = time.perf_counter()
            for i in range(repeat):
                embedder.text(WORDS[i % len(WORDS)])
            out["embed_text_ms"] = 1000 * (time.perf_counter() - began) / repeat
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keyframes", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out: dict[str, Any] = {"cpu_flags": cpu_flags(), "keyframes": args.keyframes}
    with database("mysql") as url, tempfile.TemporaryDirectory(prefix="hw-search-") as tmp:
        engine = create_engine(url)
        upgrade(engine)
        repository = Repository(engine)
        print(f"seeding {args.keyframes:,} keyframes", file=sys.stderr)
        out.update(seed(engine, repository, args.keyframes))
        index, search = time_index(repository, args.keyframes, Path(tmp) / "search")
        out.update(index)
        out.update(time_api(repository, search, args.keyframes, args.repeat))
        search.stop()
        engine.dispose()
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for key, value in out.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
