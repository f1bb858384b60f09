from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hazardwatch.cli import main
from hazardwatch.errors import ConfigError
from hazardwatch.evaluation.scores import parse_rows


def make_dataset(root: Path) -> tuple[Path, Path]:
    """Two synthetic scenes: one hazard that rises mid-way, one quiet; lengths disagree."""
    scores, annotations = root / "scores", root / "annotations"
    scores.mkdir()
    annotations.mkdir()
    rng = np.random.default_rng(0)
    prompts = ["debris on the road", "a deer on the road", "answer row"]
    hazard = 0.22 + 0.002 * rng.standard_normal((3, 300))
    hazard[0, 150:250] += 0.03  # debris appears at frame 150 for 100 frames
    hazard[2, :] = 0.9  # a leaking row, excluded by --rows 0-1
    quiet = 0.22 + 0.002 * rng.standard_normal((3, 200))
    for name, matrix, events, total in (
        ("scene_a", hazard, [{"start": 150, "end": 249}], 300),
        ("scene_b", quiet, [], 190),  # annotation says 190 frames: a warning, not a crash
    ):
        np.save(scores / f"{name}.npy", matrix.astype(np.float32))
        (scores / f"{name}_prompts.json").write_text(json.dumps({"prompts": prompts}))
        (annotations / f"{name}.mp4.json").write_text(
            json.dumps(
                {"type": "debris" if events else "normal", "total_frames": total, "events": events}
            )
        )
    return scores, annotations


def test_eval_scores_reports_metrics_plots_sweep_and_baseline(tmp_path: Path) -> None:
    scores, annotations = make_dataset(tmp_path)
    bank = tmp_path / "bank.yaml"
    bank.write_text(
        "classes:\n  debris: {kind: hazard, prompts: [debris on the road]}\n"
        "  animal: {kind: hazard, prompts: [a deer on the road]}\n"
    )
    out, plots = tmp_path / "out.json", tmp_path / "plots"
    code = main(
        [
            "eval",
            "scores",
            "--scores",
            str(scores),
            "--annotations",
            str(annotations),
            "--rows",
            "0-1",
            "--fps",
            "30",
            "--output",
            str(out),
            "--plots",
            str(plots),
            "--baseline-threshold",
            "0.5",
            "--sweep",
            "--bank",
            str(bank),
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    by_name = {s["scene"]: s for s in report["scenes"]}
    assert set(by_name) == {"scene_a", "scene_b"}
    (event,) = by_name["scene_a"]["predicted_events"]
    assert 150 <= event["start"] <= 190 and 240 <= event["end"] <= 290
    assert by_name["scene_a"]["metrics"]["event_hits"] == 1
    assert by_name["scene_b"]["predicted_events"] == []
    assert by_name["scene_b"]["metrics"]["f1"] == 1.0
    assert "warnings" in by_name["scene_b"] and by_name["scene_b"]["frames"] == 190
    assert report["mean"]["fpr"] < 0.2  # only the tail of the smoothed event
    assert report["baseline"]["mean"]["f1"] == pytest.approx(0.5)  # flags nothing: 0 and 1
    assert report["sweep"]["rows"] and "recommended_threshold" in report["sweep"]
    for png in ("scene_a.png", "scene_b.png", "sweep.png"):
        assert (plots / png).stat().st_size > 5_000


@pytest.mark.parametrize(
    ("text", "rows"), [("0-3", [0, 1, 2, 3]), ("0-1,5", [0, 1, 5]), (None, None)]
)
def test_parse_rows(text: str | None, rows: list[int] | None) -> None:
    assert parse_rows(text) == rows


def test_parse_rows_rejects_nonsense() -> None:
    with pytest.raises(ConfigError, match="--rows"):
        parse_rows("3-1")


@pytest.mark.shared
def test_eval_scores_on_shared_scenes_beats_the_source_baseline(
    shared_dir: Path, tmp_path: Path
) -> None:
    data = shared_dir / "data" / "hazard-scenes"
    out = tmp_path / "out.json"
    code = main(
        [
            "eval",
            "scores",
            "--scores",
            str(data / "scores"),
            "--annotations",
            str(data / "annotations"),
            "--rows",
            "0-37",
            "--output",
            str(out),
            "--plots",
            str(tmp_path / "plots"),
            "--baseline-threshold",
            "0.28",
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert len(report["scenes"]) == 7
    ours, source = report["mean"], report["baseline"]["mean"]
    # The shipped defaults: F1 no worse than the source method, FPR far lower.
    assert ours["f1"] >= source["f1"] - 0.01
    assert ours["fpr"] <= source["fpr"] / 3
    assert len(list((tmp_path / "plots").glob("*.png"))) == 7


def test_eval_video_writes_a_score_matrix_and_evaluates_it(
    tmp_path: Path, tiny_clip_weights: Path
) -> None:
    from tests.fakes import write_red_square_clip

    weights = tiny_clip_weights
    clip_path = tmp_path / "lot.mp4"
    write_red_square_clip(str(clip_path), seconds=4.0)
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"total_frames": 40, "events": [{"start": 20, "end": 39}]}))
    out = tmp_path / "out"
    code = main(
        [
            "eval",
            "video",
            str(clip_path),
            "--model",
            str(weights),
            "--annotations",
            str(labels),
            "--output",
            str(out),
        ]
    )
    assert code == 0
    matrix = np.load(out / "scores" / "lot.npy")
    prompts = json.loads((out / "scores" / "lot_prompts.json").read_text())["prompts"]
    assert matrix.shape == (len(prompts), 40) and matrix.dtype == np.float32
    assert np.all(np.abs(matrix) <= 1.0001)
    report = json.loads((out / "report.json").read_text())
    assert report["scenes"][0]["scene"] == "lot" and "f1" in report["scenes"][0]["metrics"]


@pytest.mark.shared
def test_eval_video_on_shared_footage(
    shared_dir: Path, tmp_path: Path, tiny_clip_weights: Path
) -> None:
    weights = tiny_clip_weights
    video = shared_dir / "data" / "videos" / "car-detection.mp4"
    out = tmp_path / "out"
    assert main(["eval", "video", str(video), "--model", str(weights), "--output", str(out)]) == 0
    matrix = np.load(out / "scores" / "car-detection.npy")
    assert matrix.shape[1] == 377  # every decoded frame of the clip
