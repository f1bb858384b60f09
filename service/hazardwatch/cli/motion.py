"""`hazardwatch motion`: the motion gate over a video file, to tune its thresholds and
masks before a camera goes live."""

from __future__ import annotations

import argparse
from pathlib import Path

from hazardwatch.cli.common import (
    EXIT_OK,
    Subcommands,
    add_command,
    camera_option,
    configured_camera,
    settings_from,
)


def register(sub: Subcommands) -> None:
    motion = add_command(
        sub, "motion", cmd_motion, "run the motion gate over a video file to tune its thresholds"
    )
    motion.add_argument("video", type=Path, metavar="VIDEO", help="video file to scan")
    camera_option(motion, "use this configured camera's masks")
    motion.add_argument("--json", type=Path, metavar="OUT", help="write per-frame results here")
    motion.add_argument("--preview", type=Path, metavar="OUT.mp4", help="write an annotated video")


def cmd_motion(args: argparse.Namespace) -> int:
    import json

    import cv2

    from hazardwatch.components import gate_params
    from hazardwatch.motion.scan import scan_video

    cv2.setNumThreads(1)  # cameras (here: frames) are the parallelism; OpenCV's pool spins
    settings = settings_from(args)
    masks: list[list[tuple[float, float]]] = []
    if args.camera:
        masks = configured_camera(settings, args.camera).masks
    report = scan_video(args.video, gate_params(settings.motion), masks, args.preview)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report))
    summary = report["summary"]
    share = summary["motion_frames"] / summary["frames"] if summary["frames"] else 0.0
    print(
        f"{args.video}: {summary['frames']} frames, {summary['motion_frames']} with motion "
        f"({share:.0%}), gated at {summary['fps']} frames/s"
    )
    return EXIT_OK
