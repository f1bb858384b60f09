"""Which frames become keyframes, and the search scores' meaning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hazardwatch.detect.normal import encode_embedding
from hazardwatch.images import ImageOptions, encode_jpeg
from hazardwatch.records import (
    EventRecord,
    EventUpdate,
    Frame,
    GatedFrame,
    KeyframeBatch,
    KeyframeRecord,
    KeyframeShot,
    MotionResult,
    ScoredFrame,
)
from hazardwatch.scoring.bank import PromptBank
from hazardwatch.search import keyframes as keyframes_module
from hazardwatch.search.keyframes import KeyframeSampler, thumbnail, thumbnail_path
from hazardwatch.search.service import KeyframeSearch

BANK = PromptBank.from_text("classes:\n  fire: {kind: hazard, prompts: [a fire]}\n")
T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
PIXELS = np.full((360, 640, 3), 90, np.uint8)


def scored(camera: str, t: float, reason: str = "motion", wire: bool = False) -> ScoredFrame:
    frame = Frame(camera, int(t * 10), t, T0 + timedelta(seconds=t), PIXELS)
    image = encode_jpeg(PIXELS, ImageOptions()) if wire else None
    gated = GatedFrame(frame, MotionResult(True, 0.1, None), reason, 1, wire_image=image)  # type: ignore[arg-type]
    return ScoredFrame(gated, {"fire": 0.1}, np.zeros(1, np.float32), BANK, np.eye(8)[0])


def sampler(interval_s: float = 10.0) -> tuple[KeyframeSampler, list[KeyframeShot]]:
    kept: list[KeyframeShot] = []
    return KeyframeSampler(kept.extend, "m", interval_s=interval_s, width=160), kept


def test_one_keyframe_per_interval_per_camera_while_in_motion_never_a_heartbeat() -> None:
    keyframes, kept = sampler(10.0)
    keyframes.on_scored([scored("a", 0.0), scored("b", 0.5), scored("a", 4.0)])
    keyframes.on_scored([scored("a", 9.9, "postroll"), scored("a", 10.0, "preroll")])
    keyframes.on_scored([scored("a", 25.0, "heartbeat"), scored("b", 30.0, wire=True)])
    assert [(s.record.camera, s.record.ts) for s in kept] == [
        ("a", T0), ("b", T0 + timedelta(seconds=0.5)), ("a", T0 + timedelta(seconds=10)),
        ("b", T0 + timedelta(seconds=30)),
    ]  # fmt: skip
    for shot in kept:  # from pixels and from the wire's JPEG alike: 160 px thumbnails
        assert shot.jpeg[:3] == b"\xff\xd8\xff" and shot.record.thumbnail_bytes == len(shot.jpeg)
        assert np.frombuffer(shot.record.embedding, np.float16)[0] == 1.0
    assert kept[0].record.thumbnail_path == "a/keyframes/2026-05-01/080000000.jpg"
    # A frame from before the last keyframe (a late delivery) starts the interval again.
    keyframes.on_scored([scored("a", 2.0)])
    assert kept[-1].record.ts == T0 + timedelta(seconds=2)


def test_a_frame_that_does_not_decode_costs_its_keyframe_not_the_batch() -> None:
    keyframes, kept = sampler()
    good = scored("a", 0.0)
    broken = GatedFrame(
        good.gated.frame, good.gated.motion, "motion", 1, wire_image=b"\xff\xd8\xff!"
    )
    bad = ScoredFrame(broken, {"fire": 0.1}, good.prompt_similarities, BANK, good.embedding)
    keyframes.on_scored([bad, scored("b", 0.0)])
    assert [s.record.camera for s in kept] == ["b"] and keyframes.failed == 1


@pytest.mark.parametrize(("shape", "side"), [((432, 768), 180), ((768, 432), 320)])
def test_a_thumbnail_of_a_wire_jpeg_decodes_it_only_as_large_as_the_thumbnail_needs(
    monkeypatch: pytest.MonkeyPatch, shape: tuple[int, int], side: int
) -> None:
    """A 320-px thumbnail of a 768 x 432 frame needs its shorter side at 180, so libjpeg
    decodes it at half size (a full decode, then an area average, cost four times more)."""
    asked: list[int] = []
    decode = keyframes_module.decode_at_least

    def recorded(data: bytes, min_side: int) -> tuple[np.ndarray, float]:
        asked.append(min_side)
        return decode(data, min_side)

    monkeypatch.setattr(keyframes_module, "decode_at_least", recorded)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (*shape, 3), np.uint8)
    jpeg = thumbnail(encode_jpeg(pixels, ImageOptions()), 320, 70)
    out = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert asked == [side]
    assert out.shape[1] == 320 and abs(out.shape[0] - round(320 * shape[0] / shape[1])) <= 1


def test_an_ended_event_keeps_its_peak_with_its_uuid() -> None:
    keyframes, kept = sampler()
    record = EventRecord(
        "e1", "a", "fire", "critical", "closed", T0, T0 + timedelta(seconds=3), 0.9, 0.8,
        ended_at=T0 + timedelta(seconds=5), peak_embedding=encode_embedding(np.eye(8)[1]),
    )  # fmt: skip
    for kind in ("started", "updated"):
        keyframes.on_event(EventUpdate(kind, record, PIXELS, None))  # type: ignore[arg-type]
    assert kept == []
    keyframes.on_event(EventUpdate("ended", record, PIXELS, None))
    assert len(kept) == 1 and kept[0].record.event_uuid == "e1"
    assert kept[0].record.ts == record.peak_at
    assert kept[0].record.thumbnail_path == thumbnail_path("a", record.peak_at)


class NoRows:
    """The table, for a search that only needs the index: every id is a row."""

    def get(self, ids: list[int]) -> dict[int, object]:
        return {i: i for i in ids}


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), share=st.floats(0.0, 0.1))
def test_scores_mean_the_same_rarity_for_any_query(seed: int, share: float) -> None:
    """Random stored footage, a sight in `share` of it: an ordinary frame scores about 0
    and the spread of ordinary frames about 1 for any query, and the sight stands out
    (a matching minority, up to a tenth of the footage, moves neither much)."""
    rng = np.random.default_rng(seed)
    dim, n = 32, 2000
    rows = rng.standard_normal((n, dim)).astype(np.float32)
    sight = rng.standard_normal(dim).astype(np.float32)
    sight /= np.linalg.norm(sight)
    showing = rng.random(n) < share
    rows[showing] += 4 * sight * np.sqrt(dim) / 4
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    search = KeyframeSearch(NoRows(), "m")  # type: ignore[arg-type]
    records = tuple(
        KeyframeRecord("c", T0 + timedelta(seconds=i), rows[i].astype(np.float16).tobytes(),
                       f"c/{i}.jpg", 1, "m")
        for i in range(n)
    )  # fmt: skip
    search.stored(list(range(1, n + 1)), KeyframeBatch(records))
    for direction in (sight, rng.standard_normal(dim).astype(np.float32)):
        query = direction / np.linalg.norm(direction)
        scores = np.array([m.score for m in search.search(query, n)])
        ids = np.array([m.keyframe for m in search.search(query, n)]) - 1
        ordinary = scores[~showing[ids]]
        assert abs(np.median(ordinary)) < 0.5
        assert 0.6 < 1.4826 * np.median(np.abs(ordinary - np.median(ordinary))) < 1.3
    if showing.sum() >= 5:
        best = search.search(sight, int(showing.sum()))
        assert np.mean([m.score for m in best]) > 3


def test_the_reference_sample_is_uniform_over_everything_stored() -> None:
    search = KeyframeSearch(NoRows(), "m")  # type: ignore[arg-type]
    n = 40_000
    first = np.zeros((n, 4), np.float16)
    first[:, 0] = 1  # the first half points one way, the second another
    first[n // 2 :, 0], first[n // 2 :, 1] = 0, 1
    for lo in range(0, n, 1000):
        batch = tuple(
            KeyframeRecord("c", T0 + timedelta(seconds=i), first[i].tobytes(), "p", 1, "m")
            for i in range(lo, lo + 1000)
        )
        search.stored(list(range(lo + 1, lo + 1001)), KeyframeBatch(batch))
    reference = search._reference
    assert reference is not None and len(reference) == 4096
    assert 0.45 < float(reference[:, 1].mean()) < 0.55
    assert search.sizes() == {"c": (n, n * (1 + 8))}


@pytest.mark.parametrize("model", ["m", "other"])
def test_keyframes_of_another_model_are_not_indexed(model: str) -> None:
    search = KeyframeSearch(NoRows(), "m")  # type: ignore[arg-type]
    record = KeyframeRecord("c", T0, np.eye(4, dtype=np.float16)[0].tobytes(), "p", 1, model)
    search.stored([1], KeyframeBatch((record,)))
    assert (search.index is not None and len(search.index) == 1) == (model == "m")
