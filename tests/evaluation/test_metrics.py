from __future__ import annotations

import numpy as np
import pytest

from hazardwatch.evaluation.metrics import (
    event_metrics,
    flags_of,
    frame_metrics,
    mean_metrics,
    span_iou,
    spans_of,
)


def arr(s: str) -> np.ndarray:
    return np.array([c == "1" for c in s])


@pytest.mark.parametrize(
    ("pred", "truth", "expected"),
    [
        # tp=2 fp=1 fn=1 tn=2 → P=2/3 R=2/3 F1=2/3 FPR=1/3
        ("011100", "001110", {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "fpr": 1 / 3}),
        ("000000", "001110", {"precision": 0.0, "recall": 0.0, "f1": 0.0, "fpr": 0.0}),
        ("111111", "001110", {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "fpr": 1.0}),
        # no hazards: quiet scores F1 1, any flag scores 0; recall undefined
        ("000000", "000000", {"precision": 1.0, "recall": None, "f1": 1.0, "fpr": 0.0}),
        ("010000", "000000", {"precision": 0.0, "recall": None, "f1": 0.0, "fpr": 1 / 6}),
        # all hazard: FPR undefined
        ("111", "111", {"precision": 1.0, "recall": 1.0, "f1": 1.0, "fpr": None}),
    ],
)
def test_frame_metrics(pred: str, truth: str, expected: dict) -> None:
    got = frame_metrics(arr(pred), arr(truth))
    for key, value in expected.items():
        assert got[key] == (pytest.approx(value) if value is not None else None), key


def test_spans_and_flags_round_trip() -> None:
    flags = arr("0110011101")
    assert spans_of(flags) == [(1, 2), (5, 7), (9, 9)]
    assert (flags_of(spans_of(flags), 10) == flags).all()
    assert spans_of(arr("")) == []


@pytest.mark.parametrize(
    ("a", "b", "iou"),
    [
        ((0, 9), (5, 14), 5 / 15),
        ((0, 4), (5, 9), 0.0),
        ((2, 3), (0, 9), 0.2),
        ((3, 3), (3, 3), 1.0),
    ],
)
def test_span_iou(a, b, iou) -> None:
    assert span_iou(a, b) == pytest.approx(iou)


def test_event_metrics_hits_false_alarms_and_tiou() -> None:
    truth = [(10, 19), (40, 49)]
    predicted = [(15, 24), (60, 65), (70, 71)]
    m = event_metrics(predicted, truth)
    assert m["temporal_iou"] == [pytest.approx(5 / 15), 0.0]
    assert m["event_hits"] == 1 and m["false_alarms"] == 2 and m["predicted_events"] == 3


def test_mean_skips_undefined() -> None:
    mean = mean_metrics(
        [
            {
                "precision": 1.0,
                "recall": None,
                "f1": 1.0,
                "fpr": 0.0,
                "mean_temporal_iou": None,
                "event_hits": 0,
                "false_alarms": 0,
            },
            {
                "precision": 0.5,
                "recall": 1.0,
                "f1": 0.5,
                "fpr": 0.5,
                "mean_temporal_iou": 0.4,
                "event_hits": 1,
                "false_alarms": 2,
            },
        ]
    )
    assert mean["recall"] == 1.0 and mean["f1"] == 0.75 and mean["mean_temporal_iou"] == 0.4
