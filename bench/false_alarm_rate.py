"""Benchmark: false alarms per camera-day on normal footage a calibration never saw (issue 28).

Scene 005's class probabilities (rows 0-37, the eval bank's nine hazard classes; three
minutes of real normal driving, read as 10 fps footage) are split in two ways:

- `tail`: frames 0-2999 calibrate, frames 3000- are the unseen footage. A moving car: the
  unseen part shows roads the calibration never did (the harder case).
- `alternate`: blocks of 300 frames (30 s at 10 fps), even ones calibrate and odd ones
  are the unseen footage: the same stretch of road, as a fixed camera's next hour
  resembles its calibration.

Every class is calibrated at `--calibration-fps` (10) with its share of `--budget` (false
alarms a day per camera, the shipped 1 by default), then `--hours` camera-hours of the
unseen part, block-bootstrapped (300-frame blocks, each forward or reversed), are replayed
through the live detector at each `--fps` (t = index / fps, as `eval scores --fps` does:
5 fps stretches 10-fps footage to twice its length; with `--resample`, the footage's own
hour sampled at each rate instead: the same world, fewer or more frames of it), one
bootstrap seed per hour. Both
threshold methods run on the same hours: `per-rate` (shipped: at least the own tail of
each replay rate within a factor of two of the footage's) and `pooled` (the tail pooled
over the rates alone, before it).

Printed per method, split and rate: events, events per camera-day and its one-sided 95 %
Poisson upper bound. The bootstrap recombines a few minutes of footage, so the bound is on
this footage's recombinations, not on a day of new footage.

    python bench/false_alarm_rate.py [--hours 3] [--fps 5,10,30] [--calibration-fps 10]
        [--resample] [--json]
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hazardwatch.detect.detector import DetectorParams, TemporalDetector
from hazardwatch.detect.normal import CameraNormal, ClassNormal
from hazardwatch.detect.thresholds import fit_class
from hazardwatch.evaluation.scores import load_scene, scene_channels
from hazardwatch.scoring.bank import PromptBank
from procs import cpu_flags

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "hazard-scenes"
CALIBRATION_FPS = 10.0
BLOCK = 300  # 30 s of 10-fps footage
POOL = 3000
METHODS = ("per-rate", "pooled")
SPLITS = ("tail", "alternate")


@functools.cache  # once per worker process, not once per job
def footage() -> dict[str, np.ndarray]:
    logging.getLogger("hazardwatch").setLevel(logging.ERROR)  # scene 005's length warning
    scene = load_scene(SHARED / "scores" / "scene_005.npy", SHARED / "annotations", range(38))
    bank = PromptBank.from_file(ROOT / "config" / "eval" / "hazard-scenes.yaml")
    return scene_channels(scene, bank, 100.0)


def split(values: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray]:
    """(calibration, unseen) frames of one class."""
    if how == "tail":
        return values[:POOL], values[POOL:]
    blocks = [values[i : i + BLOCK] for i in range(0, values.size, BLOCK)]
    return np.concatenate(blocks[0::2]), np.concatenate(blocks[1::2])


def bootstrap(values: np.ndarray, frames: int, rng: np.random.Generator) -> np.ndarray:
    parts, total = [], 0
    while total < frames:
        start = int(rng.integers(0, values.size - BLOCK))
        part = values[start : start + BLOCK]
        parts.append(part if rng.random() < 0.5 else part[::-1])
        total += BLOCK
    return np.concatenate(parts)[:frames]


def calibrated(values: np.ndarray, per_day: float, method: str, fps: float) -> ClassNormal:
    """One class's share of the budget, as `normal.calibrate` gives it."""
    params = DetectorParams()
    times = np.arange(values.size) / fps
    fit = fit_class([(values, times)], params.evidence, per_day, each_rate=method == "per-rate")
    return ClassNormal(fit.low, fit.level, fit.high, fit.noise, fit.threshold, fit.burst)


def events_in(job: tuple[str, str, float, int, float, float, bool]) -> dict[str, Any]:
    """One (method, split, fps) over `hours` camera-hours: every class, one seed an hour."""
    method, how, fps, hours, budget, calibration_fps, resample = job
    channels = footage()
    params = DetectorParams(false_alarms_per_day=budget)
    count, by_class = 0, {}
    for index, (name, values) in enumerate(sorted(channels.items())):
        seen, unseen = split(values, how)
        band = calibrated(seen, budget / len(channels), method, calibration_fps)
        normal = CameraNormal(classes={name: band}, source="calibrated")
        n = 0
        for hour in range(hours):
            rng = np.random.default_rng([hour, int(fps * 10), index])
            if resample:  # the footage's own hour, sampled at fps
                own = bootstrap(unseen, int(3600 * calibration_fps), rng)
                series = own[(np.arange(int(3600 * fps)) * calibration_fps / fps).astype(int)]
            else:  # the footage's frames, one per 1 / fps seconds
                series = bootstrap(unseen, int(3600 * fps), rng)
            detector = TemporalDetector(
                "cam", params, normal=CameraNormal.from_json(normal.to_json())
            )
            for i, value in enumerate(series):
                n += sum(
                    e.kind == "started" for e in detector.update(i / fps, {name: float(value)})
                )
        by_class[name] = {"threshold": band.threshold, "burst": band.burst, "events": n}
        count += n
    days = hours / 24.0
    return {
        "method": method,
        "split": how,
        "fps": fps,
        "calibration_fps": calibration_fps,
        "resampled": resample,
        "camera_hours": hours,
        "events": count,
        "per_day": count / days,
        "per_day_upper95": poisson_upper(count) / days,
        "classes": by_class,
    }


def poisson_upper(k: int, z: float = 1.6448536269514722) -> float:
    """One-sided 95 % upper bound of a Poisson mean from k events (Wilson–Hilferty on the
    chi-squared with 2k + 2 degrees of freedom): 3.0 for none."""
    if k == 0:
        return -math.log(0.05)
    dof = 2 * (k + 1)
    c = 2.0 / (9.0 * dof)
    return 0.5 * dof * (1.0 - c + z * math.sqrt(c)) ** 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--hours", type=int, default=3, help="camera-hours per method, split and rate"
    )
    parser.add_argument("--fps", default="5,10,30")
    parser.add_argument("--calibration-fps", type=float, default=CALIBRATION_FPS)
    parser.add_argument(
        "--resample",
        action="store_true",
        help="sample the footage's own hour at each rate instead of stretching its frames",
    )
    parser.add_argument("--budget", type=float, default=DetectorParams().false_alarms_per_day)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"{SHARED} is missing: this bench replays the shared hazard scenes")
    jobs = [
        (m, s, float(f), args.hours, args.budget, args.calibration_fps, args.resample)
        for s in SPLITS
        for f in args.fps.split(",")
        for m in METHODS
    ]
    started = time.monotonic()
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        rows = list(pool.map(events_in, jobs))
    report = {
        "cpu_flags": cpu_flags(),
        "budget_per_day": args.budget,
        "seconds": round(time.monotonic() - started, 1),
        "rows": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"budget {args.budget:g} false alarms a day per camera, calibrated at"
        f" {args.calibration_fps:g} fps, {'resampled' if args.resample else 'stretched'}"
        f" to each rate; CPU flags {report['cpu_flags']}"
    )
    head = ("method", "split", "fps", "cam-h", "events", "/day", "≤/day 95%")
    print("{:9} {:9} {:>4} {:>5} {:>6} {:>7} {:>10}".format(*head))
    for r in rows:
        print(
            f"{r['method']:9} {r['split']:9} {r['fps']:4g} {r['camera_hours']:5d} {r['events']:6d}"
            f" {r['per_day']:7.2f} {r['per_day_upper95']:10.2f}"
        )
    print(f"({report['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
