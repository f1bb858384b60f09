"""Frame- and event-level metrics for hazard detection on annotated sequences.

Conventions (so every scene gets a number): precision with nothing predicted is 1 when
the scene has nothing to find and 0 otherwise; F1 on a scene without hazards is 1 when
nothing is flagged and 0 otherwise; recall is undefined (None) without hazards and the
false-positive rate undefined without non-hazard frames. Means skip undefined values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

Span = tuple[int, int]  # inclusive frame indices
BoolArray = npt.NDArray[np.bool_]


def spans_of(flags: BoolArray) -> list[Span]:
    """Runs of True as inclusive (start, end) index pairs."""
    padded = np.concatenate([[False], np.asarray(flags, bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(s), int(e) - 1) for s, e in zip(edges[::2], edges[1::2], strict=True)]


def flags_of(spans: Iterable[Span], length: int) -> BoolArray:
    flags = np.zeros(length, bool)
    for start, end in spans:
        flags[max(0, start) : min(length, end + 1)] = True
    return flags


def frame_metrics(pred: BoolArray, truth: BoolArray) -> dict[str, float | int | None]:
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction has {pred.size} frames, ground truth {truth.size}")
    tp = int(np.sum(pred & truth))
    fp = int(np.sum(pred & ~truth))
    fn = int(np.sum(~pred & truth))
    tn = int(np.sum(~pred & ~truth))
    positives = tp + fn
    precision = tp / (tp + fp) if tp + fp else (1.0 if positives == 0 else 0.0)
    recall = tp / positives if positives else None
    if positives == 0:
        f1 = 1.0 if tp + fp == 0 else 0.0
    elif precision + (recall or 0.0) == 0:
        f1 = 0.0
    else:
        assert recall is not None
        f1 = 2 * precision * recall / (precision + recall)
    fpr = fp / (fp + tn) if fp + tn else None
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "fpr": fpr,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def span_iou(a: Span, b: Span) -> float:
    inter = min(a[1], b[1]) - max(a[0], b[0]) + 1
    if inter <= 0:
        return 0.0
    union = max(a[1], b[1]) - min(a[0], b[0]) + 1
    return inter / union


def event_metrics(predicted: Sequence[Span], truth: Sequence[Span]) -> dict[str, Any]:
    """Temporal IoU per ground-truth event (best overlapping prediction), hits, false alarms."""
    tiou = [max((span_iou(g, p) for p in predicted), default=0.0) for g in truth]
    hits = sum(1 for g in truth if any(span_iou(g, p) > 0 for p in predicted))
    false_alarms = sum(1 for p in predicted if not any(span_iou(g, p) > 0 for g in truth))
    return {
        "temporal_iou": tiou,
        "mean_temporal_iou": float(np.mean(tiou)) if tiou else None,
        "events": len(truth),
        "event_hits": hits,
        "predicted_events": len(predicted),
        "false_alarms": false_alarms,
        "onset_frames": [onset_delay(g, predicted) for g in truth],
    }


def onset_delay(event: Span, predicted: Sequence[Span]) -> int | None:
    """Frames from a true event's start to the start of the first prediction overlapping it
    (0 when that prediction began earlier); None when no prediction overlaps it."""
    starts = [p[0] for p in predicted if span_iou(event, p) > 0]
    return max(0, min(starts) - event[0]) if starts else None


def totals(
    per_scene: Sequence[dict[str, Any]], frames: Sequence[int], fps: float
) -> dict[str, Any]:
    """Event-level figures summed over scenes: recall, false alarms per hour, onset latency.

    False alarms per hour are counted on the scenes without any hazard (normal footage),
    where every predicted event is false; `None` when no such scene was given.
    """
    events = sum(m["events"] for m in per_scene)
    hits = sum(m["event_hits"] for m in per_scene)
    normal = [(m, n) for m, n in zip(per_scene, frames, strict=True) if m["events"] == 0]
    normal_hours = sum(n for _, n in normal) / fps / 3600
    onsets = [o / fps for m in per_scene for o in m["onset_frames"] if o is not None]
    return {
        "events": events,
        "event_hits": hits,
        "event_recall": hits / events if events else None,
        "false_alarms": sum(m["false_alarms"] for m in per_scene),
        "normal_hours": normal_hours,
        "false_alarms_per_hour": (
            sum(m["predicted_events"] for m, _ in normal) / normal_hours if normal_hours else None
        ),
        "onset_latency_s": {
            "median": float(np.median(onsets)) if onsets else None,
            "max": float(np.max(onsets)) if onsets else None,
        },
    }


MEAN_KEYS = ("precision", "recall", "f1", "fpr", "mean_temporal_iou", "event_hits", "false_alarms")


def mean_metrics(per_scene: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Mean of each metric over scenes, skipping undefined (None) values."""
    out: dict[str, float | None] = {}
    for key in MEAN_KEYS:
        values = [m[key] for m in per_scene if m.get(key) is not None]
        out[key] = float(np.mean(values)) if values else None
    out["scenes"] = float(len(per_scene))
    return out


def roc_auc(scores: npt.NDArray[np.float64], positive: npt.NDArray[np.bool_]) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties counted half); None with one class only."""
    pos, neg = scores[positive], scores[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return None
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))
