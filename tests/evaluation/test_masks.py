"""Mask metrics on hand-made masks with known answers, seed 004's layout, and the command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from hazardwatch.cli import main
from hazardwatch.errors import ConfigError
from hazardwatch.evaluation.masks import (
    ColourMap,
    MaskError,
    confusion,
    evaluate_masks,
    number_of,
    pair_up,
    scores,
    zero_shot_predictor,
)
from hazardwatch.scoring.bank import PromptBank

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)
SEED_004 = ["255,0,0=corrosion", "0,0,255=asset", "0,255,0=background"]


def labels(rows: list[str], classes: int) -> np.ndarray:
    """'aab.' → class indices: a=0, b=1, c=2, and '.' (no class) = `classes`."""
    lookup = {"a": 0, "b": 1, "c": 2, ".": classes}
    return np.array([[lookup[ch] for ch in row] for row in rows], np.int64)


def metrics(truth: list[str], predicted: list[str], classes: int = 2) -> dict[str, Any]:
    names = ["a", "b", "c"][:classes]
    return scores(confusion(labels(truth, classes), labels(predicted, classes), classes), names)


def test_iou_dice_and_accuracy_by_hand() -> None:
    # Truth: left half a, right half b. Prediction: three columns a, one column b.
    got = metrics(["aabb"] * 4, ["aaab"] * 4)
    a, b = got["per_class"]["a"], got["per_class"]["b"]
    assert (a["iou"], a["dice"]) == pytest.approx((8 / 12, 16 / 20))  # TP 8, FP 4, FN 0
    assert (b["iou"], b["dice"]) == pytest.approx((4 / 8, 8 / 12))  # TP 4, FP 0, FN 4
    assert (a["precision"], a["recall"], b["precision"], b["recall"]) == pytest.approx(
        (8 / 12, 1.0, 1.0, 0.5)
    )
    assert got["pixel_accuracy"] == pytest.approx(12 / 16)
    assert got["mean_iou"] == pytest.approx((8 / 12 + 0.5) / 2)
    assert got["mean_dice"] == pytest.approx((0.8 + 8 / 12) / 2)


def test_perfect_and_disjoint_masks() -> None:
    perfect = metrics(["ab", "ba"], ["ab", "ba"])
    assert perfect["mean_iou"] == 1.0 and perfect["mean_dice"] == 1.0
    assert perfect["pixel_accuracy"] == 1.0
    swapped = metrics(["ab", "ba"], ["ba", "ab"])
    assert swapped["mean_iou"] == 0.0 and swapped["pixel_accuracy"] == 0.0


def test_unlabelled_pixels_count_against_their_class() -> None:
    got = metrics(["aa", "aa"], ["a.", ".."])
    a = got["per_class"]["a"]
    assert (a["iou"], a["dice"], a["recall"], a["precision"]) == pytest.approx(
        (0.25, 0.4, 0.25, 1.0)
    )
    assert got["unlabelled_pixels"] == 3 and got["pixel_accuracy"] == 0.25


def test_a_class_in_neither_truth_nor_prediction_is_left_out_of_the_means() -> None:
    got = metrics(["ab"], ["ab"], classes=3)
    assert got["per_class"]["c"]["iou"] is None and got["per_class"]["c"]["dice"] is None
    assert got["mean_iou"] == 1.0  # a and b only


@pytest.mark.parametrize(
    ("specs", "error"),
    [(["255,0=fire"], "is not R,G,B=class"),
     (["256,0,0=fire"], "channel values are 0-255"),
     (["1,2,3=a", "1,2,3=b"], "colour 1,2,3 is given twice"),
     ([], "at least one")],
)  # fmt: skip
def test_bad_colour_maps_name_the_entry(specs: list[str], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        ColourMap.parse(specs)


def test_colour_map_decodes_and_names_unknown_colours() -> None:
    colours = ColourMap.parse(SEED_004)
    assert colours.classes == ("corrosion", "asset", "background")
    rgb = np.array([[RED, BLUE], [GREEN, GREEN]], np.uint8)
    assert colours.decode(rgb, "GT_001.png").tolist() == [[0, 1], [2, 2]]
    rgb[0, 0] = (250, 3, 3)  # a JPEG-smoothed edge
    with pytest.raises(MaskError, match=r"GT_001.png: 1 pixel\(s\) of colours not in --colors"):
        colours.decode(rgb, "GT_001.png")


def test_pairs_are_matched_by_number(tmp_path: Path) -> None:
    assert number_of(Path("ORI_001.png")) == 1 and number_of(Path("GT_120.png")) == 120
    assert number_of(Path("cover.png")) is None
    folders = {
        "original": ["ORI_001.png", "ORI_002.png", "ORI_007.png"],
        "ground_truth": ["GT_001.png", "GT_002.png", "GT_009.png", "x.png"],
    }
    for folder, names in folders.items():
        (tmp_path / folder).mkdir()
        for name in names:
            (tmp_path / folder / name).write_bytes(b"")
    pairs, problems = pair_up(tmp_path / "original", tmp_path / "ground_truth")
    assert [p[0] for p in pairs] == [1, 2]
    errors = {Path(p["file"]).name: p["error"] for p in problems}
    assert errors == {
        "x.png": "no number in the name to pair it by",
        "ORI_007.png": "no ground truth numbered 7",
        "GT_009.png": "no image numbered 9",
    }


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb.astype(np.uint8), cv2.COLOR_RGB2BGR))


def seed_004_folder(root: Path, pairs: int = 3, size: int = 64) -> Path:
    """Images with a red (corrosion) square on a blue (asset) pipe on green background;
    masks painted in the seed's colours, as its dataset is."""
    for n in range(1, pairs + 1):
        truth = np.zeros((size, size, 3), np.uint8)
        truth[:] = GREEN
        truth[size // 4 : 3 * size // 4, :] = BLUE
        truth[size // 4 : size // 2, n * 8 : n * 8 + 16] = RED
        write_rgb(root / "ground_truth" / f"GT_{n:03d}.png", truth)
        image = truth.copy()
        image[truth.sum(axis=2) == 255] //= 2  # darker than the mask, same layout
        write_rgb(root / "original" / f"ORI_{n:03d}.png", image)
    return root


def test_another_models_masks_are_scored_with_known_answers(tmp_path: Path) -> None:
    """--predictions: pair 1 exact, pair 2 with its corrosion called asset; pair 3's
    prediction has the wrong size, pair 4's truth a colour not in the map: both skipped,
    named, and the others scored."""
    root = seed_004_folder(tmp_path, pairs=4)
    bad = cv2.imread(str(root / "ground_truth" / "GT_004.png"))
    bad[0, 0] = (7, 7, 7)
    cv2.imwrite(str(root / "ground_truth" / "GT_004.png"), bad)
    predictions = tmp_path / "predicted"
    for n in (1, 2, 3, 4):
        truth = cv2.cvtColor(cv2.imread(str(root / "ground_truth" / f"GT_{n:03d}.png")),
                             cv2.COLOR_BGR2RGB)  # fmt: skip
        if n == 2:
            truth[(truth == RED).all(axis=2)] = BLUE
        if n == 3:
            truth = truth[:32]
        write_rgb(predictions / f"PRED_{n:03d}.png", truth)
    colours = ColourMap.parse(SEED_004)
    report = evaluate_masks(
        root / "original", root / "ground_truth", colours, predictions=predictions,
        plots=tmp_path / "plots",
    )  # fmt: skip
    assert report["pairs_scored"] == 2 and report["skipped"] == 2
    problems = {Path(p["file"]).name: p["error"] for p in report["problems"]}
    assert "64x32, but GT_003.png is 64x64" in problems["PRED_003.png"]
    assert "colours not in --colors: (7,7,7) ×1" in problems["GT_004.png"]
    # Corrosion: 16x16 = 256 pixels per image; pair 2's are all called asset.
    corrosion = report["per_class"]["corrosion"]
    assert (corrosion["iou"], corrosion["dice"]) == pytest.approx((0.5, 2 / 3))
    asset_true = 2 * (32 * 64 - 256)
    asset = report["per_class"]["asset"]
    assert asset["iou"] == pytest.approx(asset_true / (asset_true + 256))
    assert report["per_class"]["background"]["iou"] == 1.0
    assert report["pixel_accuracy"] == pytest.approx(1 - 256 / (2 * 64 * 64))
    grid = cv2.imread(report["plot"])
    assert grid.shape == (28 + 2 * (256 + 4), 3 * 256 + 8, 3)  # titles, then two rows


class FakeScorer:
    """Class probabilities of a crop from its colours: red → corrosion, blue → asset,
    green → background (the zero-shot path without CLIP weights)."""

    bank = PromptBank.from_text(
        "classes:\n"
        "  corrosion: {kind: hazard, severity: warning, prompts: [a corroded pipe]}\n"
        "  asset: {kind: normal, prompts: [a steel pipe]}\n"
        "  background: {kind: normal, prompts: [grass]}\n"
    )

    def __call__(self, images: list[np.ndarray]) -> tuple[PromptBank, np.ndarray, object]:
        probs = []
        for bgr in images:
            b, g, r = (bgr.reshape(-1, 3) > 60).mean(axis=0)
            share = np.array([r * (1 - b), b * (1 - r), g]) + 1e-6
            probs.append(share / share.sum())
        return self.bank, np.array(probs), None


def test_zero_shot_masks_are_as_coarse_as_their_grid(tmp_path: Path) -> None:
    """With evidence that is exact per crop (colour shares), what limits the masks is the
    grid: each crop spans two cells, so at grid 4 a band a quarter of the image high is
    lost between its neighbours, and a finer grid follows the layout far closer."""
    root = seed_004_folder(tmp_path, pairs=2, size=128)
    colours = ColourMap.parse(SEED_004)
    mean_iou = {}
    for grid in (4, 8):
        predict = zero_shot_predictor(FakeScorer(), colours, threshold=0.0, grid=grid)
        report = evaluate_masks(root / "original", root / "ground_truth", colours, predict=predict)
        assert report["pairs_scored"] == 2 and report["unlabelled_pixels"] == 0
        mean_iou[grid] = report["mean_iou"]
    assert mean_iou[8] > mean_iou[4] + 0.2
    # The threshold leaves pixels unlabelled where no class is sure enough.
    strict = zero_shot_predictor(FakeScorer(), colours, threshold=0.9, grid=4)
    report = evaluate_masks(root / "original", root / "ground_truth", colours, predict=strict)
    assert report["unlabelled_pixels"] > 0


def test_eval_masks_command_with_the_real_loader(
    tmp_path: Path, tiny_clip_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Tiny random CLIP weights through the real loader: the command runs end to end (its
    numbers mean nothing, the weights are random); a class not in the bank is refused."""
    root = seed_004_folder(tmp_path, pairs=2)
    bank = tmp_path / "corrosion.yaml"
    bank.write_text(
        "classes:\n"
        "  corrosion: {kind: hazard, severity: warning, prompts: [a corroded pipe, rust]}\n"
        "  asset: {kind: normal, prompts: [a steel pipe]}\n"
        "  background: {kind: normal, prompts: [grass, a wall]}\n"
    )
    out = tmp_path / "report.json"
    args = ["eval", "masks", "--images", str(root / "original"),
            "--masks", str(root / "ground_truth"), "--colors", *SEED_004,
            "--model", str(tiny_clip_weights), "--bank", str(bank),
            "--output", str(out), "--plots", str(tmp_path / "plots")]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "2 pair(s) scored, 0 skipped" in printed and "mean IoU" in printed
    report = json.loads(out.read_text())
    assert report["classes"] == ["corrosion", "asset", "background"]
    assert report["pixels"] == 2 * 64 * 64 and "zero-shot, grid 4" in report["predicted_by"]
    assert (tmp_path / "plots" / "masks.png").is_file()
    # The default bank has no "corrosion": a clear error naming the fix.
    code = main([*args[:-6], "--output", str(out)])
    assert code == 2
    assert "corrosion, asset, background of --colors are not in the prompt bank" in (
        capsys.readouterr().err
    )


def test_eval_masks_names_skipped_files_and_titles_the_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 29.7: a skipped pair is named by its file on stderr, not by its number; the
    plot has column titles above its rows."""
    root = seed_004_folder(tmp_path, pairs=3)
    (root / "ground_truth" / "GT_002.png").unlink()
    args = ["eval", "masks", "--images", str(root / "original"),
            "--masks", str(root / "ground_truth"), "--colors", *SEED_004,
            "--predictions", str(root / "ground_truth"),
            "--output", str(tmp_path / "r.json"), "--plots", str(tmp_path / "plots")]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    assert f"skipped {root / 'original' / 'ORI_002.png'}: no ground truth numbered 2" in err
    plot = cv2.imread(str(tmp_path / "plots" / "masks.png"))
    rows = 2  # pairs 1 and 3, each 256 px plus a 4 px line, under a 28 px title band
    assert plot.shape[0] == 28 + rows * 260
    assert (plot[:28] < 128).any(), "the title band holds text"
