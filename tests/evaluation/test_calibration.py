"""Calibration from score matrices and videos, camera states in eval, and cross-validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from hazardwatch.cli import main
from hazardwatch.detect.detector import DetectorParams
from hazardwatch.detect.normal import CameraNormal
from hazardwatch.evaluation.metrics import event_metrics, onset_delay, totals
from hazardwatch.evaluation.scores import Scene, cross_validate, load_matrix
from hazardwatch.scoring.bank import PromptBank
from hazardwatch.storage import migrate
from hazardwatch.storage.engine import create_engine
from hazardwatch.storage.repository import Repository

BANK = """
classes:
  debris: {kind: hazard, prompts: [debris on the road]}
  animal: {kind: hazard, prompts: [a deer on the road]}
"""
PROMPTS = ["debris on the road", "a deer on the road"]


def write_scene(
    root: Path, name: str, matrix: np.ndarray, events: list[tuple[int, int]] | None
) -> None:
    (root / "scores").mkdir(exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    np.save(root / "scores" / f"{name}.npy", matrix.astype(np.float32))
    (root / "scores" / f"{name}_prompts.json").write_text(json.dumps({"prompts": PROMPTS}))
    if events is not None:
        spans = [{"start": s, "end": e} for s, e in events]
        (root / "annotations" / f"{name}.mp4.json").write_text(
            json.dumps({"type": "debris" if spans else "normal", "events": spans})
        )


def quiet(frames: int, seed: int) -> np.ndarray:
    return 0.22 + 0.002 * np.random.default_rng(seed).standard_normal((2, frames))


# ---------------------------------------------------------------------------- metrics


def test_onset_delay_is_from_the_true_start_to_the_first_overlapping_prediction() -> None:
    assert onset_delay((100, 200), [(10, 20), (130, 250), (150, 160)]) == 30
    assert onset_delay((100, 200), [(90, 120)]) == 0  # already on before it began
    assert onset_delay((100, 200), [(10, 20), (201, 300)]) is None


def test_totals_give_recall_false_alarms_per_hour_and_onset_latency() -> None:
    hazard = event_metrics([(130, 250), (400, 410)], [(100, 200)])
    normal = event_metrics([(10, 20), (50, 60)], [])
    missed = event_metrics([], [(5, 9)])
    out = totals([hazard, normal, missed], [500, 108_000, 100], fps=30.0)
    assert out["events"] == 2 and out["event_hits"] == 1 and out["event_recall"] == 0.5
    assert out["false_alarms"] == 3  # (400, 410) on the hazard scene and both on normal
    assert out["normal_hours"] == pytest.approx(1.0)
    assert out["false_alarms_per_hour"] == pytest.approx(2.0)  # normal footage only
    assert out["onset_latency_s"] == {"median": pytest.approx(1.0), "max": pytest.approx(1.0)}
    none = totals([hazard], [500], fps=30.0)
    assert none["false_alarms_per_hour"] is None and none["normal_hours"] == 0


# ---------------------------------------------------------------------------- calibrate


def test_calibrate_scores_writes_a_state_that_eval_starts_from(tmp_path: Path) -> None:
    normal = quiet(600, 1)
    write_scene(tmp_path, "normal", normal, None)
    bank = tmp_path / "bank.yaml"
    bank.write_text(BANK)
    state_path = tmp_path / "state.json"
    code = main(
        ["calibrate", "--scores", str(tmp_path / "scores" / "normal.npy"), "--rows", "0-1",
         "--output", str(state_path), "--bank", str(bank)]
    )  # fmt: skip
    assert code == 0
    state = CameraNormal.from_json(json.loads(state_path.read_text()))
    assert state.source == "calibrated" and state.calibrated_s == pytest.approx(20.0)
    assert set(state.classes) == {"debris", "animal"}
    assert state.classes["debris"].low < 0.5 < state.classes["debris"].high  # two equal classes

    # A scene that starts inside a hazard: without a state the first sample is normal,
    # with the calibrated state it fires.
    (tmp_path / "scores" / "normal.npy").unlink()
    hazard = quiet(300, 2)
    hazard[0] += 0.03  # debris from the first frame to the last
    write_scene(tmp_path, "start", hazard, [(0, 299)])
    args = ["eval", "scores", "--scores", str(tmp_path / "scores"), "--annotations",
            str(tmp_path / "annotations"), "--bank", str(bank)]  # fmt: skip
    assert main([*args, "--output", str(tmp_path / "without.json")]) == 0
    without = json.loads((tmp_path / "without.json").read_text())
    assert without["camera_state"] == "prior"
    assert without["scenes"][0]["predicted_events"] == []
    out = tmp_path / "with.json"
    assert main([*args, "--output", str(out), "--camera-state", str(state_path)]) == 0
    report = json.loads(out.read_text())
    assert report["camera_state"] == "calibrated"
    assert report["scenes"][0]["metrics"]["event_hits"] == 1
    assert report["totals"]["onset_latency_s"]["median"] <= 1.0 + 2.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "one of --scores"),
        (["--scores", "x.npy", "clip.mp4"], "one of --scores"),
        (["--from-history", "2", "clip.mp4"], "one of --scores"),
        (["--from-history", "2"], "--from-history needs --camera"),
        (["--scores", "missing.npy", "--output", "s.json"], "does not exist"),
        (["--scores", "x.npy"], "--output"),
        (["clip.mp4"], "--camera"),
    ],
)
def test_calibrate_usage_errors_exit_2_with_the_reason(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["calibrate", *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "does not exist"), ("{", "not JSON"), ('{"version": 7}', "calibrate again")],
)
def test_a_bad_camera_state_file_is_a_clear_error(
    tmp_path: Path, content: str | None, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    write_scene(tmp_path, "a", quiet(60, 3), [])
    state = tmp_path / "state.json"
    if content is not None:
        state.write_text(content)
    code = main(
        ["eval", "scores", "--scores", str(tmp_path / "scores"), "--annotations",
         str(tmp_path / "annotations"), "--output", str(tmp_path / "o.json"),
         "--camera-state", str(state)]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "--camera-state" in err and message in err


def test_load_matrix_refuses_a_file_that_is_not_npy(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npy"
    bad.write_text("not numpy")
    with pytest.raises(Exception, match="not a NumPy"):
        load_matrix(bad, None)


def test_calibrate_a_camera_from_video_stores_bands_and_references(
    tmp_path: Path, tiny_clip_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.fakes import write_red_square_clip

    clip = tmp_path / "normal.mp4"
    write_red_square_clip(str(clip), seconds=4.0, on=(99.0, 99.0))  # nothing happens
    url = f"sqlite:///{tmp_path / 'hw.db'}"
    engine = create_engine(url)
    migrate.upgrade(engine)
    config = tmp_path / "hw.yaml"
    config.write_text(
        f"storage: {{database_url: '{url}', data_dir: '{tmp_path / 'data'}'}}\n"
        "detector: {max_references: 4}\n"
        f"cameras: [{{name: gate, url: '{clip}'}}]\n"
    )
    code = main(
        ["calibrate", "--camera", "gate", str(clip), "--config", str(config),
         "--model", str(tiny_clip_weights)]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "camera gate:" in printed and "normal reference(s)" in printed
    stored = Repository(engine).load_camera_states()
    with engine.connect() as conn:
        row = conn.execute(sa.text('SELECT source, "references" FROM camera_states')).one()
        kind = conn.execute(sa.text("SELECT source_kind FROM cameras")).scalar_one()
    assert kind == "file"  # the configured camera's kind, not "unknown" forever
    engine.dispose()
    state = CameraNormal.from_json(json.loads(stored["gate"]))
    bank = PromptBank.from_file(Path("config/prompts.yaml"))
    assert set(state.classes) == set(bank.hazard_classes)
    assert state.source == "calibrated" and state.calibrated_s == pytest.approx(4.0)
    assert 1 <= len(state.references) <= 4 and tuple(row) == ("calibrated", len(state.references))
    # The clip never changes: its frames are one sight, merged into few references.
    assert state.references.similarity(state.references.embeddings[0]) == pytest.approx(1.0)


def test_calibrate_refuses_an_unknown_camera_and_a_file_that_is_not_a_video_before_the_model(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Issue 29.6/29.7: `--camera typo` fails unless --force; a file that is not a video
    fails with our message before the model loads (a missing weights file is never
    reached), and OpenCV's raw warning does not reach the terminal."""
    from tests.fakes import write_red_square_clip

    clip = tmp_path / "normal.mp4"
    write_red_square_clip(str(clip), seconds=2.0, on=(99.0, 99.0))
    junk = tmp_path / "notes.mp4"
    junk.write_text("not a video at all\n" * 100)
    url = f"sqlite:///{tmp_path / 'hw.db'}"
    config = tmp_path / "hw.yaml"
    config.write_text(
        f"storage: {{database_url: '{url}', data_dir: '{tmp_path / 'data'}'}}\n"
        f"cameras: [{{name: gate, url: '{clip}'}}]\n"
    )
    missing_model = str(tmp_path / "no-such-weights.pt")
    base = ["calibrate", "--config", str(config), "--model", missing_model]
    assert main([*base, "--camera", "gaet", str(clip)]) == 2
    err = capfd.readouterr().err
    assert "camera 'gaet' is not in the configuration (configured: gate)" in err
    assert "--force" in err and "weights" not in err
    assert main([*base, "--camera", "gate", str(junk)]) == 2
    err = capfd.readouterr().err
    assert "calibrate:" in err and "video file of normal footage" in err
    assert "WARN" not in err and "cap.cpp" not in err and "weights" not in err
    # --force passes the name check (the missing weights then fail, as they should).
    assert main([*base, "--camera", "gaet", "--force", str(clip)]) != 0
    assert "weights" in capfd.readouterr().err.lower()


# ---------------------------------------------------------------------------- cross-validation


def test_cross_validation_fits_each_fold_without_its_held_out_scene() -> None:
    bank = PromptBank.from_text(BANK)
    scenes = []
    for i in range(4):
        matrix = quiet(300, 10 + i)
        truth = np.zeros(300, bool)
        events: list[tuple[int, int]] = []
        if i < 3:
            matrix[0, 100:250] += 0.03
            truth[100:250] = True
            events = [(100, 249)]
        scenes.append(
            Scene(f"s{i}", matrix, PROMPTS, truth, events, "debris" if events else "normal")
        )
    report = cross_validate(scenes, bank, DetectorParams(), 30.0, 100.0, 0.3, DetectorParams())
    assert [f["held_out"] for f in report["folds"]] == ["s0", "s1", "s2", "s3"]
    for fold in report["folds"]:
        assert set(fold["chosen"]) == {"enter_threshold", "normal_margin"}
    for key in ("selected", "defaults", "legacy", "source_method"):
        assert report[key]["totals"]["events"] == 3
    assert report["defaults"]["totals"]["event_hits"] == 3
    assert report["defaults"]["totals"]["false_alarms_per_hour"] == 0.0
    with pytest.raises(Exception, match="at least three"):
        cross_validate(scenes[:2], bank, DetectorParams(), 30.0, 100.0)


def test_pooled_prior_of_the_folds_never_sees_the_held_out_scene() -> None:
    from hazardwatch.evaluation.scores import calibrate_scenes

    bank = PromptBank.from_text(BANK)
    low = Scene("low", np.full((2, 100), 0.2), PROMPTS, np.zeros(100, bool), [], "normal")
    high_matrix = np.full((2, 100), 0.2)
    high_matrix[0] += 0.05
    high = Scene("high", high_matrix, PROMPTS, np.zeros(100, bool), [], "normal")
    only_low = calibrate_scenes([low], bank, 100.0, 30.0, DetectorParams())
    both = calibrate_scenes([low, high], bank, 100.0, 30.0, DetectorParams())
    band = only_low["debris"]
    assert (band.low, band.level, band.high) == (0.5, 0.5, 0.5)
    assert both["debris"].high > 0.9  # the other scene's level widens the band


def test_class_auc_says_whether_the_annotated_class_carries_any_signal() -> None:
    from hazardwatch.evaluation.scores import class_auc, scene_channels

    bank = PromptBank.from_text(BANK)
    truth = np.zeros(100, bool)
    truth[40:60] = True
    matrix = np.full((2, 100), 0.2)
    matrix[0, 40:60] += 0.05  # debris rises during the hazard
    clear = Scene("clear", matrix, PROMPTS, truth, [(40, 59)], "debris")
    assert class_auc(clear, scene_channels(clear, bank, 100.0)) == 1.0
    flat = Scene("flat", np.full((2, 100), 0.2), PROMPTS, truth, [(40, 59)], "debris")
    assert class_auc(flat, scene_channels(flat, bank, 100.0)) == 0.5  # no signal at all
    unnamed = Scene("unnamed", matrix, PROMPTS, truth, [(40, 59)], "fallen tree")
    assert class_auc(unnamed, scene_channels(unnamed, bank, 100.0)) is None
    normal = Scene("normal", matrix, PROMPTS, np.zeros(100, bool), [], "debris")
    assert class_auc(normal, scene_channels(normal, bank, 100.0)) is None
