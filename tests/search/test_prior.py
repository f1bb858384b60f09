"""The prior of a class by example from stored keyframes (search/prior.py): what the
class may alert on before a camera has learned it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hazardwatch.detect.thresholds import MIN_BURST_Z, REPLAY_SAFETY
from hazardwatch.records import KeyframeRecord
from hazardwatch.search.prior import MIN_KEYFRAMES, SUSTAIN_S, keyframe_prior, prior_of, scores
from hazardwatch.storage import migrate
from hazardwatch.storage.engine import create_engine
from hazardwatch.storage.repository import Repository

T0 = datetime(2026, 12, 1, 8, tzinfo=UTC)


def logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    cameras=st.lists(
        st.tuples(st.floats(0.55, 0.95), st.floats(0.001, 0.05), st.integers(MIN_KEYFRAMES, 400)),
        min_size=1,
        max_size=4,
    ),
    seed=st.integers(0, 2**16),
)
def test_no_stored_normal_keyframe_reaches_the_priors_burst_limit(
    cameras: list[tuple[float, float, int]], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    runs = [np.clip(level + spread * rng.standard_normal(n), 0.01, 0.99)
            for level, spread, n in cameras]  # fmt: skip
    prior = prior_of(runs)
    assert prior is not None and prior.noise is not None and prior.burst is not None
    assert prior.burst >= MIN_BURST_Z and prior.threshold == pytest.approx(SUSTAIN_S * prior.burst)
    for run in runs:
        excess = (logit(run) - np.median(logit(run))) / prior.noise
        assert excess.max() * REPLAY_SAFETY <= prior.burst + 1e-9
    # The band holds the bulk of every camera's scores.
    pooled = np.concatenate(runs)
    assert prior.low <= np.median(pooled) <= prior.high


def test_too_few_keyframes_give_no_prior() -> None:
    assert prior_of([np.full(MIN_KEYFRAMES - 1, 0.7)]) is None
    assert prior_of([]) is None


def test_the_prior_reads_each_cameras_newest_normal_keyframes_of_the_model(
    tmp_path: Path, database_url: str
) -> None:
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    table = Repository(engine).keyframes
    rng = np.random.default_rng(7)
    example = np.eye(16, dtype=np.float32)[0]
    records = []
    for camera, near in (("north", 0.2), ("south", 0.5)):
        for i in range(40):
            v = near * example + rng.standard_normal(16).astype(np.float32) * 0.1
            v[1] += 1.0
            v /= np.linalg.norm(v)
            records.append(KeyframeRecord(camera, T0 + timedelta(seconds=i), v.astype(np.float16)
                                          .tobytes(), f"{camera}/{i}.jpg", 10, "m"))  # fmt: skip
    # An event's peak (the sight itself) and another model's keyframe are not normal here.
    records.append(KeyframeRecord("north", T0 + timedelta(hours=1), example.astype(np.float16)
                                  .tobytes(), "north/peak.jpg", 10, "m", "e-1"))  # fmt: skip
    records.append(KeyframeRecord("west", T0, example.astype(np.float16).tobytes(),
                                  "west/0.jpg", 10, "other"))  # fmt: skip
    table.add(records)
    assert table.cameras(model_name="m") == ["north", "south"]
    rows = table.normal_embeddings("north", model_name="m", limit=10)
    assert rows.shape == (10, 16) and rows.dtype == np.float16
    newest = np.frombuffer(records[39].embedding, np.float16)
    assert np.array_equal(rows[0], newest)  # newest first, the event's peak left out
    prior = keyframe_prior(table, example[None, :], "m")
    assert prior is not None and prior.high < (1 + 0.9) / 2  # the peak's 1.0 not in it
    south = keyframe_prior(table, example[None, :], "m", ["south"])
    north = keyframe_prior(table, example[None, :], "m", ["north"])
    assert south is not None and north is not None and north.level < south.level
    assert keyframe_prior(table, example[None, :], "m", ["west"]) is None
    assert scores(example[None, :], example[None, :]) == pytest.approx([1.0])
    engine.dispose()
