"""`hazardwatch eval …`: offline evaluation with the live detector. `scores` replays
score matrices against annotations (with cross-validation and a threshold sweep),
`video` scores a clip into such a matrix, `images` classifies labelled folders, `masks`
measures hazard masks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hazardwatch.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    HAZARD_SCENES_BANK,
    Subcommands,
    config_option,
    fmt,
    model_option,
    settings_from,
)
from hazardwatch.cli.report import print_cv, print_eval_table
from hazardwatch.errors import ConfigError

if TYPE_CHECKING:
    from hazardwatch.detect.normal import CameraNormal


def register(sub: Subcommands) -> None:
    evaluate = sub.add_parser("eval", help="offline evaluation and calibration")
    eval_sub = evaluate.add_subparsers(dest="eval_command", metavar="KIND", required=True)
    scores = eval_sub.add_parser(
        "scores", help="replay [prompts, frames] score matrices through the live detector"
    )
    scores.set_defaults(handler=cmd_eval_scores)
    config_option(scores)
    scores.add_argument(
        "--scores", type=Path, required=True, metavar="DIR", help="*.npy + *_prompts.json"
    )
    scores.add_argument(
        "--annotations", type=Path, required=True, metavar="DIR", help="NAME.mp4.json files"
    )
    scores.add_argument(
        "--rows",
        metavar="RANGES",
        help="rows to use, e.g. 0-37 (rows past 37 of the shared scenes leak the answer)",
    )
    scores.add_argument(
        "--fps", type=float, default=30.0, help="frame rate of the scored video (default 30)"
    )
    scores.add_argument("--output", type=Path, required=True, metavar="OUT.json")
    scores.add_argument(
        "--plots", type=Path, metavar="DIR", help="write per-scene (and sweep) PNGs here"
    )
    scores.add_argument(
        "--baseline-threshold",
        type=float,
        metavar="T",
        help="also score the source method: any row above T",
    )
    scores.add_argument(
        "--sweep", action="store_true", help="sweep the enter threshold; recommend one"
    )
    scores.add_argument(
        "--bank",
        type=Path,
        default=HAZARD_SCENES_BANK,
        help="prompt bank grouping rows into classes by prompt text "
        "(default: config/eval/hazard-scenes.yaml)",
    )
    scores.add_argument(
        "--logit-scale",
        type=float,
        default=100.0,
        help="CLIP logit scale for class probabilities (default 100)",
    )
    scores.add_argument(
        "--camera-state",
        type=Path,
        metavar="STATE.json",
        help="start every scene's detector from this state (hazardwatch calibrate --scores) "
        "instead of the bank's prior",
    )
    scores.add_argument(
        "--cv",
        action="store_true",
        help="leave-one-scene-out cross-validation of the prior and the detector settings",
    )

    images_cmd = eval_sub.add_parser(
        "images", help="classify labelled image folders: accuracy, per-class F1, ROC-AUC"
    )
    images_cmd.set_defaults(handler=cmd_eval_images)
    config_option(images_cmd)
    images_cmd.add_argument("directory", type=Path, metavar="DIR", help="one folder per class")
    images_cmd.add_argument(
        "--map",
        action="append",
        metavar="FOLDER=CLASS",
        help="map a folder to a bank class, or to hazard / normal (repeat per folder)",
    )
    images_cmd.add_argument(
        "--normal-refs", type=Path, metavar="DIR", help="few-shot normal images"
    )
    images_cmd.add_argument("--top-k", type=int, default=5)
    model_option(images_cmd)
    images_cmd.add_argument(
        "--output", type=Path, default=Path("eval-images.json"), metavar="OUT.json"
    )
    images_cmd.add_argument("--plots", type=Path, metavar="DIR", help="write confusion.png here")

    masks_cmd = eval_sub.add_parser(
        "masks",
        help="IoU / Dice of hazard masks on image + mask folders (seed 004's layout)",
        description="Pairs IMAGES/ORI_001.png with MASKS/GT_001.png by the number in the "
        "name; masks paint each class in one RGB colour. Predicts our zero-shot masks over "
        "those classes (or reads another model's from --predictions) and reports per-class "
        "and mean IoU and Dice and the pixel accuracy.",
    )
    masks_cmd.set_defaults(handler=cmd_eval_masks)
    config_option(masks_cmd)
    masks_cmd.add_argument("--images", type=Path, required=True, metavar="DIR")
    masks_cmd.add_argument("--masks", type=Path, required=True, metavar="DIR")
    masks_cmd.add_argument(
        "--colors",
        nargs="+",
        required=True,
        metavar="R,G,B=CLASS",
        help="each class's colour in the masks, e.g. 255,0,0=corrosion 0,255,0=background",
    )
    model_option(masks_cmd)
    masks_cmd.add_argument(
        "--bank", type=Path, metavar="FILE", help="prompt bank with the classes (default: live)"
    )
    masks_cmd.add_argument(
        "--predictions",
        type=Path,
        metavar="DIR",
        help="score these masks (same colours, numbered like the truth) instead of ours",
    )
    masks_cmd.add_argument(
        "--threshold",
        type=float,
        default=0.0,
        help="a pixel gets no class unless the winner's evidence reaches this (default 0: "
        "every pixel labelled, as a segmenter's argmax)",
    )
    masks_cmd.add_argument(
        "--grid", type=int, default=4, help="crop grid cells per side (default 4)"
    )
    masks_cmd.add_argument(
        "--output",
        type=Path,
        default=Path("eval-masks.json"),
        metavar="OUT.json",
        help="the JSON report (default: eval-masks.json in the current directory)",
    )
    masks_cmd.add_argument(
        "--plots",
        type=Path,
        metavar="DIR",
        help="write masks.png here: a row per pair (image with its file name, ground truth, "
        "prediction) under column titles",
    )

    video_cmd = eval_sub.add_parser(
        "video", help="score every frame of a clip into a score matrix (+ metrics with labels)"
    )
    video_cmd.set_defaults(handler=cmd_eval_video)
    config_option(video_cmd)
    video_cmd.add_argument("video", type=Path, metavar="VIDEO")
    video_cmd.add_argument(
        "--annotations",
        type=Path,
        metavar="JSON",
        help='{"total_frames", "events": [{"start", "end"}]}',
    )
    model_option(video_cmd)
    video_cmd.add_argument("--fps", type=float, help="frame rate (default: the file's)")
    video_cmd.add_argument(
        "--output",
        type=Path,
        default=Path("eval-video"),
        metavar="DIR",
        help="writes DIR/scores/NAME.npy, NAME_prompts.json (and report.json)",
    )


def cmd_eval_scores(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from hazardwatch.detect.detector import DetectorParams
    from hazardwatch.evaluation import scores as ev
    from hazardwatch.scoring.bank import PromptBank

    settings = settings_from(args)
    params = DetectorParams.from_settings(settings.detector)
    bank = PromptBank.from_file(args.bank)
    rows = ev.parse_rows(args.rows)
    for directory, flag in ((args.scores, "--scores"), (args.annotations, "--annotations")):
        if not directory.is_dir():
            raise ConfigError(f"{flag} {directory} is not a directory")
    scenes = [ev.load_scene(p, args.annotations, rows) for p in ev.discover(args.scores)]
    normal = read_state(args.camera_state) if args.camera_state else None
    report, runs = ev.evaluate(
        scenes, bank, params, args.fps, args.logit_scale, args.baseline_threshold, normal
    )
    if args.cv:
        report["cv"] = ev.cross_validate(
            scenes, bank, params, args.fps, args.logit_scale, args.baseline_threshold, ev.TODAY
        )
    if args.sweep:
        thresholds = [round(t, 4) for t in np.arange(0.05, 0.501, 0.025)]
        report["sweep"] = ev.sweep(
            scenes, bank, params, args.fps, args.logit_scale, thresholds, normal
        )
    if args.plots:
        from hazardwatch.evaluation.plots import plot_scene, plot_sweep

        for scene in scenes:
            entry = next(r for r in report["scenes"] if r["scene"] == scene.name)
            m = entry["metrics"]
            plot_scene(
                args.plots / f"{scene.name}.png",
                f"{scene.name} ({scene.kind}) — F1 {m['f1']:.2f}, FPR {fmt(m['fpr'])}",
                runs[scene.name].signals,
                scene.events,
                runs[scene.name].spans,
                args.fps,
            )
        if args.sweep:
            plot_sweep(
                args.plots / "sweep.png",
                report["sweep"],
                report.get("baseline", {}).get("mean"),
            )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1))
    print_eval_table(report)
    if args.cv:
        print_cv(report["cv"])
    return EXIT_OK


def read_state(path: Path) -> CameraNormal:
    import json

    from hazardwatch.detect.normal import CameraNormal

    try:
        return CameraNormal.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ConfigError(f"--camera-state {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--camera-state {path} is not JSON ({exc.msg})") from None
    except ConfigError as exc:
        raise ConfigError(f"--camera-state {path}: {exc}") from None


def cmd_eval_video(args: argparse.Namespace) -> int:
    import json
    import shutil

    from hazardwatch.components import load_encoder
    from hazardwatch.detect.detector import DetectorParams
    from hazardwatch.evaluation import scores as ev
    from hazardwatch.evaluation import video
    from hazardwatch.scoring.bank import load_bank

    settings = settings_from(args)
    if not args.video.is_file():
        raise ConfigError(f"video {args.video} does not exist")
    bank = load_bank(settings.prompts.path)
    encoder = load_encoder(settings)
    name = args.video.stem
    matrix = video.score_video(args.video, encoder, bank, settings.scoring.batch_size)
    npy = video.write_matrix(args.output, name, matrix, bank.prompts)
    print(f"wrote {npy} ({matrix.shape[0]} prompts × {matrix.shape[1]} frames) and its prompts")
    if args.annotations is None:
        return EXIT_OK
    annotations = args.output / "annotations"
    annotations.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.annotations, annotations / f"{name}.json")
    scene = ev.load_scene(npy, annotations, None)
    fps = args.fps or video.frame_rate(args.video)
    report, _ = ev.evaluate(
        [scene], bank, DetectorParams.from_settings(settings.detector), fps, encoder.logit_scale
    )
    (args.output / "report.json").write_text(json.dumps(report, indent=1))
    print_eval_table(report)
    return EXIT_OK


def cmd_eval_images(args: argparse.Namespace) -> int:
    import json

    from hazardwatch.components import load_encoder
    from hazardwatch.evaluation.images import evaluate_images, plot_confusion
    from hazardwatch.scoring.bank import load_bank

    settings = settings_from(args)
    bank = load_bank(settings.prompts.path)
    encoder = load_encoder(settings)
    report = evaluate_images(
        args.directory,
        encoder,
        bank,
        args.map or [],
        args.top_k,
        args.normal_refs,
        settings.scoring.batch_size,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1))
    if args.plots:
        plot_confusion(args.plots / "confusion.png", report)
    print(
        f"{report['images']} images: accuracy {report['accuracy']:.3f}, "
        f"top-{args.top_k} {report[f'top_{args.top_k}_accuracy']:.3f}, "
        f"ROC-AUC hazard vs normal {fmt(report['roc_auc_hazard_vs_normal'])}"
    )
    for folder, m in report["per_class"].items():
        print(
            f"  {folder:<20} P {m['precision']:.3f}  R {m['recall']:.3f}  "
            f"F1 {m['f1']:.3f}  n={m['support']}"
        )
    if "few_shot" in report:
        fs = report["few_shot"]
        print(
            f"  few-shot ({fs['references']} normal refs): AUC anomaly "
            f"{fmt(fs['roc_auc_anomaly'])}, combined {fmt(fs['roc_auc_combined'])}"
        )
    return EXIT_OK


def cmd_eval_masks(args: argparse.Namespace) -> int:
    """IoU / Dice of hazard masks on a folder in seed 004's layout."""
    import json

    from hazardwatch.evaluation.masks import (
        ColourMap,
        encoder_scorer,
        evaluate_masks,
        progress_bar,
        zero_shot_predictor,
    )

    colours = ColourMap.parse(args.colors)
    if not 2 <= args.grid <= 16:
        raise ConfigError(f"--grid {args.grid}: give 2 to 16 cells per side")
    if not 0.0 <= args.threshold <= 1.0:
        raise ConfigError(f"--threshold {args.threshold:g}: give a value from 0 to 1")
    predict = None
    model = "predictions " + str(args.predictions)
    if args.predictions is None:
        from hazardwatch.components import load_encoder
        from hazardwatch.scoring.bank import load_bank

        settings = settings_from(args)
        bank = load_bank(args.bank or settings.prompts.path)
        missing = [c for c in colours.classes if c not in bank.class_names]
        if missing:
            raise ConfigError(
                f"class(es) {', '.join(missing)} of --colors are not in the prompt bank "
                f"(it has {', '.join(bank.class_names)}); give a bank that has them with "
                "--bank FILE"
            )
        encoder = load_encoder(settings)
        scorer = encoder_scorer(encoder, bank, settings.scoring.batch_size)
        predict = zero_shot_predictor(scorer, colours, args.threshold, args.grid)
        model = f"{encoder.name} zero-shot, grid {args.grid}, threshold {args.threshold:g}"
    report = evaluate_masks(
        args.images, args.masks, colours, predict=predict, predictions=args.predictions,
        plots=args.plots, progress=progress_bar,
    )  # fmt: skip
    report["predicted_by"] = model
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1))
    for problem in report["problems"]:
        print(f"  skipped {problem['file']}: {problem['error']}", file=sys.stderr)
    print(
        f"{report['pairs_scored']} pair(s) scored, {report['skipped']} skipped "
        f"({model}): mean IoU {fmt(report['mean_iou'])}, mean Dice "
        f"{fmt(report['mean_dice'])}, pixel accuracy {fmt(report['pixel_accuracy'])}"
    )
    for name, m in report["per_class"].items():
        print(f"  {name:<20} IoU {fmt(m['iou'])}  Dice {fmt(m['dice'])}")
    print(f"report: {args.output}" + (f", plot: {report['plot']}" if "plot" in report else ""))
    return EXIT_OK if report["pairs_scored"] else EXIT_FAILURE
