"""`hazardwatch eval scores`: replay CLIP score matrices through the live detector.

Input format (as in ../shared/data/hazard-scenes): `scores/NAME.npy` float [P, F] cosine
similarities of every frame with every prompt, `scores/NAME_prompts.json`
`{"prompts": [...]}`, and `annotations/NAME.mp4.json` (or NAME.json) with `type`,
`total_frames` and `events: [{"start", "end"}]` (inclusive frame indices).

Rows are grouped into classes by a prompt bank (by prompt text; rows the bank does not
know become classes of their own), turned into class probabilities with the live
function, and fed frame by frame (t = index / fps) to `TemporalDetector`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hazardwatch.detect.detector import DetectorParams, TemporalDetector, channel_params
from hazardwatch.detect.normal import CameraNormal, calibrate, pool
from hazardwatch.detect.thresholds import smooth
from hazardwatch.errors import ConfigError
from hazardwatch.evaluation.metrics import (
    Span,
    event_metrics,
    flags_of,
    frame_metrics,
    mean_metrics,
    roc_auc,
    spans_of,
    totals,
)
from hazardwatch.records import ClassNormal
from hazardwatch.scoring.bank import PromptBank, class_cosines_from_prompts, class_probabilities

log = logging.getLogger(__name__)
FloatArray = npt.NDArray[np.float64]
# The detector before issue 28 (fixed offsets over a baseline), scored beside the shipped
# one by `eval scores --cv`.
TODAY = DetectorParams(rule="offset", smoothing_s=1.0)


@dataclass
class Scene:
    name: str
    scores: FloatArray  # [P, F] after row selection and length alignment
    prompts: list[str]
    truth: npt.NDArray[np.bool_]
    events: list[Span]
    kind: str
    warnings: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return int(self.scores.shape[1])


def parse_rows(text: str | None) -> list[int] | None:
    """'0-37' or '0-5,8,10-12' → row indices; None keeps every row."""
    if not text:
        return None
    rows: list[int] = []
    for raw in text.split(","):
        part = raw.strip()
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                rows.extend(range(lo, hi + 1))
            else:
                rows.append(int(part))
        except ValueError:
            raise ConfigError(f"--rows {text!r}: write ranges like 0-37 or 0-5,8,10-12") from None
    return rows


def _annotation_path(annotations: Path, stem: str) -> Path | None:
    for name in (f"{stem}.mp4.json", f"{stem}.json"):
        if (annotations / name).is_file():
            return annotations / name
    return None


def load_matrix(scores_path: Path, rows: Sequence[int] | None) -> Scene:
    """A score matrix and its prompts, without annotations (every frame counts as normal)."""
    matrix, prompts, warnings = _read_matrix(scores_path, rows)
    frames = matrix.shape[1]
    return Scene(
        name=scores_path.stem,
        scores=matrix.astype(np.float64),
        prompts=prompts,
        truth=np.zeros(frames, bool),
        events=[],
        kind="normal",
        warnings=warnings,
    )


def _read_matrix(
    scores_path: Path, rows: Sequence[int] | None
) -> tuple[npt.NDArray[np.floating[Any]], list[str], list[str]]:
    stem = scores_path.stem
    warnings: list[str] = []
    try:
        matrix = np.load(scores_path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{scores_path}: not a NumPy .npy file ({exc})") from None
    if matrix.ndim != 2:
        raise ConfigError(
            f"{scores_path}: expected a [prompts, frames] matrix, got shape {matrix.shape}"
        )
    prompts_path = scores_path.with_name(f"{stem}_prompts.json")
    if prompts_path.is_file():
        prompts = list(json.loads(prompts_path.read_text())["prompts"])
    else:
        prompts = [f"row {i}" for i in range(matrix.shape[0])]
        warnings.append(f"{prompts_path.name} missing: rows are unnamed")
    if len(prompts) != matrix.shape[0]:
        raise ConfigError(f"{scores_path}: {matrix.shape[0]} rows but {len(prompts)} prompts")
    if rows is not None:
        kept = [r for r in rows if r < matrix.shape[0]]
        if len(kept) < len(rows):
            warnings.append(f"rows beyond {matrix.shape[0] - 1} do not exist here and are skipped")
        matrix, prompts = matrix[kept], [prompts[r] for r in kept]
    return matrix, prompts, warnings


def load_scene(scores_path: Path, annotations: Path, rows: Sequence[int] | None) -> Scene:
    stem = scores_path.stem
    matrix, prompts, warnings = _read_matrix(scores_path, rows)
    ann_path = _annotation_path(annotations, stem)
    if ann_path is None:
        raise ConfigError(
            f"no annotation for {stem} in {annotations} ({stem}.mp4.json or {stem}.json)"
        )
    ann = json.loads(ann_path.read_text())
    frames = matrix.shape[1]
    total = int(ann.get("total_frames") or frames)
    if total != frames:
        warnings.append(
            f"scores have {frames} frames but the annotation says {total}: "
            f"evaluating the first {min(frames, total)}"
        )
        frames = min(frames, total)
        matrix = matrix[:, :frames]
    events = [(int(e["start"]), int(e["end"])) for e in ann.get("events", [])]
    for warning in warnings:
        log.warning("%s: %s", stem, warning)
    return Scene(
        name=stem,
        scores=matrix.astype(np.float64),
        prompts=prompts,
        truth=flags_of(events, frames),
        events=[(s, min(e, frames - 1)) for s, e in events if s < frames],
        kind=str(ann.get("type") or "unknown"),
        warnings=warnings,
    )


def discover(scores_dir: Path) -> list[Path]:
    found = sorted(p for p in scores_dir.glob("*.npy") if not p.stem.endswith("_prompts"))
    if not found:
        raise ConfigError(f"no *.npy score matrices in {scores_dir}")
    return found


def scene_channels(scene: Scene, bank: PromptBank, logit_scale: float) -> dict[str, FloatArray]:
    """Class probabilities per frame: rows grouped by the bank's prompts, softmax over classes."""
    by_prompt = {p: c.name for c in bank.classes for p in c.prompts}
    names: list[str] = []
    index = []
    for prompt in scene.prompts:
        name = by_prompt.get(prompt, prompt)
        if name not in names:
            names.append(name)
        index.append(names.index(name))
    cosines = class_cosines_from_prompts(scene.scores, np.array(index), len(names))
    probs = class_probabilities(cosines, logit_scale)
    hazard = {c.name for c in bank.classes if c.kind == "hazard"}
    # Rows the bank does not know count as hazards: the score matrices hold hazard prompts.
    known = {c.name for c in bank.classes}
    return {n: probs[i] for i, n in enumerate(names) if n in hazard or n not in known}


@dataclass
class DetectorRun:
    spans: list[Span]
    signals: dict[str, FloatArray]  # progress to an event per channel per frame (plots)


def run_detector(
    channels: dict[str, FloatArray],
    params: DetectorParams,
    fps: float,
    overrides: dict[str, DetectorParams] | None = None,
    normal: CameraNormal | None = None,
) -> DetectorRun:
    """Feed channels frame by frame; predicted spans are the union over channels' events.

    `normal`: the camera state every scene starts from (calibrated, or the bank's prior).
    """
    frames = len(next(iter(channels.values())))
    detector = TemporalDetector("offline", params, channel_params=overrides, normal=normal)
    signals = {name: np.zeros(frames) for name in channels}
    event_spans: list[Span] = []
    for i in range(frames):
        t = i / fps
        for event in detector.update(t, {n: v[i] for n, v in channels.items()}, ref=i):
            if event.kind == "ended":
                event_spans.append(_span(event.started_at, event.at, event.end_reason, fps))
        for name in channels:
            signals[name][i] = detector.progress(name) or 0.0
    for event in detector.flush((frames - 1) / fps):
        event_spans.append((round(event.started_at * fps), frames - 1))
    union = spans_of(flags_of(event_spans, frames))
    return DetectorRun(union, signals)


def _span(started_at: float, ended_at: float, reason: str | None, fps: float) -> Span:
    start, end = round(started_at * fps), round(ended_at * fps)
    # Ended because the signal fell: that frame is the first one no longer in the event.
    return (start, end - 1 if reason == "below_exit" and end > start else end)


def baseline_method(scene: Scene, threshold: float) -> list[Span]:
    """The source project's method: a frame is hazardous when any row exceeds T."""
    return spans_of(scene.scores.max(axis=0) > threshold)


def class_auc(scene: Scene, channels: Mapping[str, FloatArray]) -> float | None:
    """How well the annotated class's probability alone tells the scene's hazard frames from
    its normal ones (ROC AUC; 0.5: no signal at all, so no detector on these prompts could
    find it). None: the scene's type names no class, or it has no hazard or no normal frame."""
    values = channels.get(scene.kind)
    return roc_auc(np.asarray(values, np.float64), scene.truth) if values is not None else None


def score_scene(scene: Scene, spans: list[Span]) -> dict[str, Any]:
    metrics: dict[str, Any] = dict(frame_metrics(flags_of(spans, scene.frames), scene.truth))
    metrics.update(event_metrics(spans, scene.events))
    return metrics


def evaluate(
    scenes: Sequence[Scene],
    bank: PromptBank,
    params: DetectorParams,
    fps: float,
    logit_scale: float,
    baseline_threshold: float | None = None,
    normal: CameraNormal | None = None,
) -> tuple[dict[str, Any], dict[str, DetectorRun]]:
    """The report for OUT.json, and each scene's detector run (for plots).

    Every scene starts from `normal` (a calibrated camera state), or else the bank's prior.
    """
    overrides = channel_params(bank, params)
    start = normal if normal is not None else CameraNormal.prior(bank)
    results, runs = [], {}
    for scene in scenes:
        channels = scene_channels(scene, bank, logit_scale)
        run = run_detector(channels, params, fps, overrides, _fresh(start))
        runs[scene.name] = run
        entry: dict[str, Any] = {
            "scene": scene.name,
            "type": scene.kind,
            "frames": scene.frames,
            "ground_truth": [{"start": s, "end": e} for s, e in scene.events],
            "predicted_events": [{"start": s, "end": e} for s, e in run.spans],
            "metrics": score_scene(scene, run.spans),
            "class_auc": class_auc(scene, channels),
        }
        if scene.warnings:
            entry["warnings"] = scene.warnings
        if baseline_threshold is not None:
            base = baseline_method(scene, baseline_threshold)
            entry["baseline"] = {
                "predicted_events": [{"start": s, "end": e} for s, e in base],
                "metrics": score_scene(scene, base),
            }
        results.append(entry)
    report: dict[str, Any] = {
        "detector": _params_dict(params),
        "fps": fps,
        "logit_scale": logit_scale,
        "bank": bank.source,
        "camera_state": start.source,
        "scenes": results,
        "mean": mean_metrics([r["metrics"] for r in results]),
        "totals": totals([r["metrics"] for r in results], [s.frames for s in scenes], fps),
    }
    if baseline_threshold is not None:
        report["baseline"] = {
            "threshold": baseline_threshold,
            "mean": mean_metrics([r["baseline"]["metrics"] for r in results]),
        }
    return report, runs


def _params_dict(params: DetectorParams) -> dict[str, Any]:
    return {name: getattr(params, name) for name in DetectorParams.__dataclass_fields__}


def sweep(
    scenes: Sequence[Scene],
    bank: PromptBank,
    params: DetectorParams,
    fps: float,
    logit_scale: float,
    thresholds: Sequence[float],
    normal: CameraNormal | None = None,
) -> dict[str, Any]:
    """Mean F1 / FPR over enter thresholds (exit keeps its ratio to enter), global and per type."""
    ratio = params.exit_threshold / params.enter_threshold if params.enter_threshold else 0.5
    channels = {s.name: scene_channels(s, bank, logit_scale) for s in scenes}
    start = normal if normal is not None else CameraNormal.prior(bank)
    rows = []
    for threshold in thresholds:
        trial = replace(params, enter_threshold=threshold, exit_threshold=threshold * ratio)
        per_scene = {
            s.name: score_scene(
                s, run_detector(channels[s.name], trial, fps, None, _fresh(start)).spans
            )
            for s in scenes
        }
        row: dict[str, Any] = {"threshold": float(threshold), **_f1_fpr(per_scene.values())}
        row["by_type"] = {
            kind: _f1_fpr(per_scene[s.name] for s in scenes if s.kind == kind)
            for kind in sorted({s.kind for s in scenes})
        }
        rows.append(row)
    best = max(rows, key=_gain)
    by_type_best = {
        kind: float(max(rows, key=partial(_type_gain, kind))["threshold"])
        for kind in rows[0]["by_type"]
    }
    return {
        "rows": rows,
        "recommended_threshold": float(best["threshold"]),
        "recommended_by_type": by_type_best,
        "criterion": "max(mean F1 - mean FPR)",
    }


def _type_gain(kind: str, row: dict[str, Any]) -> float:
    return _gain(row["by_type"][kind])


def _gain(row: dict[str, Any]) -> float:
    return float((row["f1"] or 0.0) - (row["fpr"] or 0.0))


def _f1_fpr(metrics: Any) -> dict[str, float | None]:
    items = list(metrics)
    f1 = [m["f1"] for m in items if m["f1"] is not None]
    fpr = [m["fpr"] for m in items if m["fpr"] is not None]
    return {
        "f1": float(np.mean(f1)) if f1 else None,
        "fpr": float(np.mean(fpr)) if fpr else None,
    }


def _fresh(normal: CameraNormal) -> CameraNormal:
    """A per-scene copy: one scene's learned baselines must not leak into the next."""
    return CameraNormal.from_json(normal.to_json(), normal.references.capacity)


# ------------------------------------------------------------------ calibration and CV


def smoothed_channels(
    scene: Scene, bank: PromptBank, logit_scale: float, fps: float, smoothing_s: float
) -> dict[str, FloatArray]:
    """Each channel smoothed as the detector smooths it, over the scene's frames."""
    times = np.arange(scene.frames) / fps
    return {
        name: smooth(values, times, smoothing_s)
        for name, values in scene_channels(scene, bank, logit_scale).items()
    }


def normal_segment(scene: Scene, fps: float) -> tuple[int, int] | None:
    """The scene's longest run of normal (unannotated) frames, [start, end); None when it is
    under a second (it says nothing about the camera's noise)."""
    runs = spans_of(~scene.truth)
    if not runs:
        return None
    start, end = max(runs, key=lambda r: r[1] - r[0])
    if end + 1 - start < max(2, fps):
        return None
    return start, end + 1


def normal_run(
    scene: Scene, bank: PromptBank, logit_scale: float, fps: float
) -> tuple[dict[str, FloatArray], FloatArray] | None:
    """The scene's class probabilities over its longest normal run, and their times."""
    segment = normal_segment(scene, fps)
    if segment is None:
        return None
    start, end = segment
    channels = {n: v[start:end] for n, v in scene_channels(scene, bank, logit_scale).items()}
    return channels, np.arange(end - start) / fps


def calibrate_scenes(
    scenes: Sequence[Scene],
    bank: PromptBank,
    logit_scale: float,
    fps: float,
    params: DetectorParams,
) -> dict[str, ClassNormal]:
    """Class normals from the normal frames of scenes (`normal.calibrate`): one scene is one
    camera's calibration (`hazardwatch calibrate --scores`), several are pooled into a
    prior for cameras never calibrated, each scene weighing the same in the band."""
    runs = [r for r in (normal_run(s, bank, logit_scale, fps) for s in scenes) if r is not None]
    if not runs:
        raise ConfigError("no scene has a second of normal (unannotated) footage to calibrate on")
    return calibrate(
        [c for c, _ in runs], [t for _, t in runs], params.evidence, params.false_alarms_per_day
    )


# The detector settings leave-one-scene-out CV chooses among on the training scenes: the
# offset rule's enter threshold (exit keeps its ratio) and how far its baseline may leave
# the normal band (a held-out scene is a camera never calibrated: the offset rule).
CV_GRID: dict[str, tuple[float, ...]] = {
    "enter_threshold": (0.15, 0.2, 0.25, 0.3),
    "normal_margin": (0.0, 0.05, 0.1, 0.2),
}


def _candidates(params: DetectorParams) -> list[DetectorParams]:
    ratio = params.exit_threshold / params.enter_threshold if params.enter_threshold else 0.75
    return [
        replace(params, enter_threshold=enter, exit_threshold=enter * ratio, normal_margin=margin)
        for enter in CV_GRID["enter_threshold"]
        for margin in CV_GRID["normal_margin"]
    ]


def cross_validate(
    scenes: Sequence[Scene],
    bank: PromptBank,
    params: DetectorParams,
    fps: float,
    logit_scale: float,
    baseline_threshold: float | None = None,
    legacy: DetectorParams | None = None,
) -> dict[str, Any]:
    """Leave-one-scene-out: per fold, the prior is calibrated on the other scenes' normal
    frames and the detector settings are chosen on them (max mean F1 - mean FPR, ties to
    the shipped defaults); the held-out scene is then scored once. Reports held-out means.

    `legacy` also scores another detector (today's: the offset rule with its prior
    calibrated the same way), for comparison.
    """
    if len(scenes) < 3:
        raise ConfigError("--cv needs at least three scenes")
    channels = {s.name: scene_channels(s, bank, logit_scale) for s in scenes}
    candidates = _candidates(params)
    if params not in candidates:
        candidates.append(params)
    if legacy is not None and legacy not in candidates:
        candidates.append(legacy)

    def prior(p: DetectorParams, train: Sequence[Scene]) -> CameraNormal:
        # Bands only, as a bank's `normal:` prior holds: a camera never calibrated has no
        # thresholds from its own noise and follows the offset rule (docs/detection.md).
        runs = [r for r in (normal_run(s, bank, logit_scale, fps) for s in train) if r]
        if not runs:
            raise ConfigError("no training scene has a second of normal footage")
        series = [{n: smooth(v, t, p.smoothing_s) for n, v in c.items()} for c, t in runs]
        return CameraNormal(classes=pool(series))

    def score(scene: Scene, p: DetectorParams, normal: CameraNormal) -> dict[str, Any]:
        run = run_detector(channels[scene.name], p, fps, None, _fresh(normal))
        return score_scene(scene, run.spans)

    folds, held, shipped, old, source = [], [], [], [], []
    for scene in scenes:
        train = [s for s in scenes if s is not scene]
        priors = {i: prior(p, train) for i, p in enumerate(candidates)}
        gains = [
            (_gain(_f1_fpr(score(s, p, priors[i]) for s in train)), p == params, i)
            for i, p in enumerate(candidates)
        ]
        best_i = max(gains)[2]
        best = candidates[best_i]
        held.append(score(scene, best, priors[best_i]))
        shipped.append(score(scene, params, priors[candidates.index(params)]))
        if legacy is not None:
            old.append(score(scene, legacy, priors[candidates.index(legacy)]))
        if baseline_threshold is not None:
            source.append(score_scene(scene, baseline_method(scene, baseline_threshold)))
        chosen = {k: getattr(best, k) for k in CV_GRID}
        folds.append({"held_out": scene.name, "chosen": chosen, "metrics": held[-1]})
    frames = [s.frames for s in scenes]

    def summary(per: list[dict[str, Any]]) -> dict[str, Any]:
        return {"mean": mean_metrics(per), "totals": totals(per, frames, fps)}

    report: dict[str, Any] = {
        "method": "leave-one-scene-out; prior and settings fitted on the other scenes",
        "grid": {k: list(v) for k, v in CV_GRID.items()},
        "folds": folds,
        "selected": summary(held),
        "defaults": summary(shipped),
    }
    if legacy is not None:
        report["legacy"] = {"detector": _params_dict(legacy), **summary(old)}
    if baseline_threshold is not None:
        report["source_method"] = {"threshold": baseline_threshold, **summary(source)}
    return report
