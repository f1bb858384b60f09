from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from hazardwatch.detect.detector import DetectorParams
from hazardwatch.detect.normal import (
    CameraNormal,
    ReferenceSet,
    calibrate,
    decode_embedding,
    encode_embedding,
    pool,
)
from hazardwatch.detect.thresholds import MIN_BURST_Z, smooth
from hazardwatch.errors import ConfigError
from hazardwatch.records import ClassNormal
from hazardwatch.scoring.bank import PromptBank


def unit(seed: int, dim: int = 16) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


# ---------------------------------------------------------------------------- bands


def test_band_of_a_series_is_its_5th_percentile_median_and_95th() -> None:
    band = ClassNormal.of(np.arange(101) / 100)
    assert (band.low, band.level, band.high) == pytest.approx((0.05, 0.5, 0.95))


def test_band_ignores_non_finite_values_and_refuses_none() -> None:
    assert ClassNormal.of([0.2, np.nan, 0.2, np.inf]).level == pytest.approx(0.2)
    with pytest.raises(ConfigError, match="no finite scores"):
        ClassNormal.of([np.nan])


@pytest.mark.parametrize(
    ("low", "level", "high", "message"),
    [
        (0.3, 0.2, 0.4, "low <= level <= high"),
        (0.1, 0.5, 0.4, "low <= level <= high"),
        (-0.1, 0.2, 0.4, "in 0..1"),
        (0.1, 0.2, 1.5, "in 0..1"),
        (0.1, float("nan"), 0.4, "in 0..1"),
    ],
)
def test_band_must_be_ordered_probabilities(
    low: float, level: float, high: float, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        ClassNormal(low, level, high)


def test_a_band_may_be_a_single_point() -> None:
    assert ClassNormal(0.2, 0.2, 0.2).high == 0.2


@pytest.mark.parametrize(
    "data", [None, [0.1, 0.2, 0.3], {"low": 0.1, "high": 0.3}, {"low": "a", "level": 0, "high": 1}]
)
def test_band_from_a_bad_mapping_names_the_place(data: object) -> None:
    with pytest.raises(ConfigError, match="class 'fire'"):
        ClassNormal.from_mapping(data, "class 'fire'")


def test_smooth_is_the_detectors_exponential_smoothing_with_irregular_spacing() -> None:
    out = smooth([0.0, 1.0, 1.0], [0.0, 1.0, 3.0], smoothing_s=1.0)
    first = 1 - np.exp(-1.0)
    second = first + (1 - np.exp(-2.0)) * (1 - first)
    np.testing.assert_allclose(out, [0.0, first, second], rtol=1e-6)
    np.testing.assert_allclose(smooth([0.1, 0.9], [0.0, 0.1], 0.0), [0.1, 0.9], rtol=1e-6)
    assert smooth([], [], 1.0).size == 0


def test_calibrate_bands_each_channel_after_smoothing() -> None:
    times = np.arange(200) / 10
    noisy = np.where(np.arange(200) % 2, 0.4, 0.0)  # flickers 0 / 0.4 at 10 Hz
    bands = calibrate(
        {"fire": noisy}, times, replace(DetectorParams().evidence, smoothing_s=2.0), 1.0
    )
    band = bands["fire"]
    assert 0.15 < band.level < 0.25 and band.high < 0.3  # the flicker is smoothed away
    raw = calibrate(
        {"fire": noisy}, times, replace(DetectorParams().evidence, smoothing_s=0.0), 1.0
    )
    assert raw["fire"].low == 0.0 and raw["fire"].high == pytest.approx(0.4)


def test_pool_weighs_every_camera_the_same() -> None:
    short = {"fire": np.full(10, 0.5)}
    long = {"fire": np.full(10_000, 0.1)}
    band = pool([short, long])["fire"]
    assert band.low == pytest.approx(0.1) and band.high == pytest.approx(0.5)
    assert pool([{"fire": np.array([])}]) == {}


# ---------------------------------------------------------------------------- references


def test_references_are_bounded_and_the_oldest_go_first() -> None:
    refs = ReferenceSet(capacity=3)
    for seed in range(5):
        assert refs.add(unit(seed))
    assert len(refs) == 3
    assert refs.similarity(unit(4)) == pytest.approx(1.0, abs=1e-6)
    assert refs.similarity(unit(2)) == pytest.approx(1.0, abs=1e-6)
    assert refs.similarity(unit(0)) < 0.99  # the oldest went


def test_a_near_duplicate_replaces_its_twin_instead_of_taking_a_slot() -> None:
    refs = ReferenceSet(capacity=3)
    refs.add(unit(0))
    refs.add(unit(1))
    refs.add(unit(0) + 0.001 * unit(7))  # the same sight again
    assert len(refs) == 2
    refs.add(unit(2))
    refs.add(unit(3))
    # unit(1) is now the oldest and goes; the re-seen sight counts as new.
    assert refs.similarity(unit(1)) < 0.99 and refs.similarity(unit(0)) > 0.999


def test_similarity_is_the_best_cosine_and_none_without_references() -> None:
    refs = ReferenceSet()
    assert refs.similarity(unit(0)) is None
    refs.add(3 * unit(0))  # stored normalised
    refs.add(unit(1))
    mixed = unit(0) + unit(1) * 0.1
    expected = float(unit(0) @ (mixed / np.linalg.norm(mixed)))
    assert refs.similarity(5 * mixed) == pytest.approx(expected, abs=1e-5)


def test_another_models_embeddings_are_not_compared_or_mixed_in() -> None:
    refs = ReferenceSet()
    refs.add(unit(0, dim=16))
    assert refs.similarity(unit(0, dim=8)) is None
    assert refs.add(unit(0, dim=8)) is False and len(refs) == 1


def test_embeddings_travel_as_float16_base64() -> None:
    e = unit(3)
    back = decode_embedding(encode_embedding(e))
    assert back.dtype == np.float32 and back.shape == e.shape
    np.testing.assert_allclose(back, e, atol=1e-3)
    with pytest.raises(ConfigError, match="base64"):
        decode_embedding("not base64!")


# ---------------------------------------------------------------------------- state


def test_state_round_trips_through_json() -> None:
    state = CameraNormal(
        classes={
            "fire": ClassNormal(0.01, 0.02, 0.1),
            "smoke": ClassNormal(0.01, 0.02, 0.1, noise=0.4, threshold=7.5, burst=6.25),
        },
        baselines={"fire": 0.05},
        source="calibrated",
        calibrated_s=120.0,
    )
    state.references.extend([unit(0), unit(1)])
    text = json.dumps(state.to_json())
    back = CameraNormal.from_json(json.loads(text), max_references=8)
    assert back.classes == state.classes and back.baselines == {"fire": 0.05}
    assert back.source == "calibrated" and back.calibrated_s == 120.0
    assert len(back.references) == 2 and back.references.capacity == 8
    assert back.references.similarity(unit(1)) == pytest.approx(1.0, abs=1e-3)
    assert back.band("fire") == ClassNormal(0.01, 0.02, 0.1) and back.band("dust") is None
    assert back.classes["smoke"].burst == 6.25


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_a_burst_limit_must_be_a_positive_number(bad: float) -> None:
    with pytest.raises(ConfigError, match="burst"):
        ClassNormal(0.01, 0.02, 0.1, noise=0.4, threshold=7.5, burst=bad)
    with pytest.raises(ConfigError, match="burst"):
        ClassNormal.from_mapping({"low": 0.1, "level": 0.2, "high": 0.3, "burst": bad}, "x")


def test_calibrate_gives_every_class_a_burst_limit_above_its_floor() -> None:
    rng = np.random.default_rng(4)
    times = np.arange(3000) / 10
    bands = calibrate(
        {"fire": 0.05 + 0.01 * rng.random(3000)}, times, DetectorParams().evidence, 1.0
    )
    assert bands["fire"].burst is not None and bands["fire"].burst >= MIN_BURST_Z


def test_a_restored_state_keeps_at_most_max_references() -> None:
    state = CameraNormal()
    state.references = ReferenceSet(capacity=10)
    state.references.extend([unit(i) for i in range(10)])
    back = CameraNormal.from_json(state.to_json(), max_references=4)
    assert len(back.references) == 4
    assert back.references.similarity(unit(9)) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "JSON object"),
        ({"version": 99}, "calibrate again"),
        ({"version": 1, "classes": {"fire": {"low": 0.5, "level": 0.1, "high": 0.9}}}, "fire"),
        ({"version": 1, "references": {"dim": 3, "float16": "AAAAAAAAAAA="}}, "rows of 3"),
        ({"version": 1, "references": {"dim": "x"}}, "references"),
    ],
)
def test_a_bad_state_is_a_clear_error(data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CameraNormal.from_json(data)


def test_non_finite_baselines_are_dropped_on_load() -> None:
    back = CameraNormal.from_json({"version": 1, "baselines": {"a": 0.2, "b": "x", "c": None}})
    assert back.baselines == {"a": 0.2}


def test_the_prior_comes_from_the_banks_normal_entries() -> None:
    bank = PromptBank.from_text(
        """
classes:
  fire:
    kind: hazard
    prompts: [a fire]
    normal: {low: 0.0, level: 0.01, high: 0.2}
  smoke:
    kind: hazard
    prompts: [smoke]
  street:
    kind: normal
    prompts: [a street]
"""
    )
    prior = CameraNormal.prior(bank, max_references=5)
    assert prior.source == "prior" and prior.references.capacity == 5
    assert prior.classes == {"fire": ClassNormal(0.0, 0.01, 0.2)}


def test_a_bad_normal_entry_in_a_bank_names_the_class() -> None:
    with pytest.raises(ConfigError, match=r"class 'fire'.*normal band needs low <= level"):
        PromptBank.from_text(
            "classes:\n  fire:\n    kind: hazard\n    prompts: [a fire]\n"
            "    normal: {low: 0.3, level: 0.1, high: 0.2}\n"
        )
