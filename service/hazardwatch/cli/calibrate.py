"""`hazardwatch calibrate`: learn a camera's normal (class bands, noise, thresholds for
the false-alarm budget, normal references) from normal footage, from a score matrix, or
from the camera's stored score history."""

from __future__ import annotations

import argparse
from pathlib import Path

from hazardwatch.cli.common import (
    EXIT_OK,
    HAZARD_SCENES_BANK,
    Subcommands,
    add_command,
    camera_option,
    model_option,
    settings_from,
)
from hazardwatch.cli.report import print_bands
from hazardwatch.errors import ConfigError


def register(sub: Subcommands) -> None:
    calibrate = add_command(
        sub,
        "calibrate",
        cmd_calibrate,
        "learn a camera's normal from normal footage (class bands and normal references)",
    )
    calibrate.add_argument("video", type=Path, nargs="?", metavar="VIDEO", help="normal footage")
    camera_option(calibrate, "store the state for this camera")
    calibrate.add_argument(
        "--force",
        action="store_true",
        help="store the state even when --camera names no configured camera",
    )
    calibrate.add_argument(
        "--from-history",
        type=float,
        metavar="HOURS",
        help="calibrate --camera from its score rows of the last HOURS stored in the "
        "database (event spans left out) instead of a video",
    )
    model_option(calibrate)
    calibrate.add_argument(
        "--scores", type=Path, metavar="FILE.npy", help="a [prompts, frames] score matrix instead"
    )
    calibrate.add_argument("--rows", metavar="RANGES", help="rows of --scores to use, e.g. 0-37")
    calibrate.add_argument(
        "--output", type=Path, metavar="STATE.json", help="where --scores writes the state"
    )
    calibrate.add_argument("--fps", type=float, default=30.0, help="frame rate of --scores")
    calibrate.add_argument(
        "--bank",
        type=Path,
        default=HAZARD_SCENES_BANK,
        help="bank grouping --scores rows into classes (default: config/eval/hazard-scenes.yaml)",
    )
    calibrate.add_argument("--logit-scale", type=float, default=100.0)


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Learn a camera's normal from normal footage: a score matrix (to a file), a video, or
    the camera's stored score history."""
    sources = [args.scores is not None, args.video is not None, args.from_history is not None]
    if sum(sources) != 1:
        raise ConfigError(
            "calibrate needs one of --scores FILE.npy, a VIDEO (with --camera) or "
            "--from-history HOURS (with --camera)"
        )
    if args.scores is not None:
        return _calibrate_scores(args)
    if args.from_history is not None:
        if not args.camera:
            raise ConfigError("calibrate --from-history needs --camera NAME")
        return _calibrate_history(args)
    if not args.camera:
        raise ConfigError("calibrate VIDEO needs --camera NAME (the state is stored for it)")
    return _calibrate_video(args)


def _calibrate_scores(args: argparse.Namespace) -> int:
    import json
    import time

    from hazardwatch.detect.detector import DetectorParams
    from hazardwatch.detect.normal import CameraNormal
    from hazardwatch.evaluation import scores as ev
    from hazardwatch.scoring.bank import PromptBank

    if args.output is None:
        raise ConfigError("calibrate --scores needs --output STATE.json")
    if not args.scores.is_file():
        raise ConfigError(f"--scores {args.scores} does not exist")
    settings = settings_from(args)
    bank = PromptBank.from_file(args.bank)
    scene = ev.load_matrix(args.scores, ev.parse_rows(args.rows))
    bands = ev.calibrate_scenes(
        [scene], bank, args.logit_scale, args.fps, DetectorParams.from_settings(settings.detector)
    )
    state = CameraNormal(
        classes=bands,
        source="calibrated",
        calibrated_s=scene.frames / args.fps,
        calibrated_at=time.time(),
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(state.to_json(), indent=1))
    print(f"{args.output}: {len(bands)} class band(s) from {scene.frames} frames")
    print_bands(state)
    return EXIT_OK


def _calibrate_history(args: argparse.Namespace) -> int:
    from hazardwatch.calibration import calibrate_camera_from_history

    settings = settings_from(args)
    state = calibrate_camera_from_history(
        settings, args.camera, args.from_history, force=args.force
    )
    print(
        f"camera {args.camera}: {len(state.classes)} class(es) calibrated from "
        f"{state.calibrated_s:.0f} s of stored normal history, "
        f"{len(state.references)} normal reference(s) kept"
    )
    print_bands(state)
    return EXIT_OK


def _calibrate_video(args: argparse.Namespace) -> int:
    from hazardwatch.calibration import calibrate_camera

    settings = settings_from(args)
    if not args.video.is_file():
        raise ConfigError(f"video {args.video} does not exist")
    from hazardwatch.capture.native_log import NATIVE_STDERR

    # OpenCV's own "[ WARN:0@…] global cap.cpp…" for a file that is not a video: into the
    # clear error, not raw onto the terminal.
    NATIVE_STDERR.start()
    try:
        state = calibrate_camera(settings, args.camera, args.video, force=args.force)
    finally:
        NATIVE_STDERR.stop()
    print(
        f"camera {args.camera}: {len(state.classes)} class band(s) from "
        f"{state.calibrated_s:.0f} s of footage, {len(state.references)} normal reference(s) "
        "stored"
    )
    print_bands(state)
    return EXIT_OK
