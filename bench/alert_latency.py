"""Benchmark: frame captured → webhook received, p50 / p95, at 1, 4 and 8 cameras.

Each camera is a looped 1280x720 clip at 25 frames/s, read at its own frame rate, in which
a red object appears for 4 s every 12 s. The image encoder is a FAKE (red pixels point at
the "crash" prompts; no CLIP weights can be had here) that sleeps --encoder-ms per frame to
stand in for ViT-B/32's cost on this CPU (14 ms: bench/clip_throughput.py's ~70 frames/s,
preprocessing included; it was 33 ms before the CPU fast path).
Everything else is the real service: readers, motion gate, queue, worker, detector
(min duration 1 s), writer with SQLite, alert policy and the signed webhook, to a real
HTTP receiver on 127.0.0.1.

Latency = time the receiver got the "new" alert − capture time of the frame at which the
detector decided the event (both wall clock, time.time()). It includes the
detector's minimum duration only in that the deciding frame is the one that completes it.

    python bench/alert_latency.py [--cameras 1 4 8] [--seconds 40] [--encoder-ms 14] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.fakes, tests.helpers

from tests.conftest import free_port
from tests.fakes import SlowFakeEncoder
from tests.helpers import WebhookReceiver

from hazardwatch.app import Service
from hazardwatch.records import EventUpdate
from hazardwatch.settings import load_settings


def write_clip(path: Path, offset_s: float = 0.0, seconds: float = 12.0, fps: int = 25) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (1280, 720))
    rng = np.random.default_rng(0)
    base = rng.integers(100, 160, (720, 1280, 3), dtype=np.uint8)
    for i in range(int(seconds * fps)):
        t = (i / fps - offset_s) % seconds
        frame = base.copy()
        if 4.0 <= t < 8.0:
            x = int(100 + (t - 4.0) * 150)
            frame[250:500, x : x + 300] = (20, 20, 230)
        writer.write(frame)
    writer.release()


def run_level(
    cameras: int, seconds: float, encoder_ms: float, clips: list[Path], work: Path
) -> dict[str, Any]:
    receiver = WebhookReceiver(free_port()).start()
    decided: dict[str, float] = {}

    def listen(update: EventUpdate) -> None:
        if update.kind == "started" and update.latency_from is not None:
            decided[update.record.uuid] = update.latency_from

    settings = load_settings(
        None,
        cameras=[
            {"name": f"cam{i}", "url": str(clips[i % len(clips)]), "loop": True}
            for i in range(cameras)
        ],
        storage={"database_url": f"sqlite:///{work / f'hw{cameras}.db'}", "data_dir": str(work)},
        media={"dir": str(work / f"media{cameras}"), "clips": False},
        alerts={"cooldown_s": 0, "webhook": {"url": receiver.url, "secret": "bench"}},
        api={"enabled": False},
    )
    service = Service(
        settings, lambda s: SlowFakeEncoder(encoder_ms / 1000), event_listeners=[listen]
    )
    summary: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: summary.update(vars(service.run())), daemon=True)
    thread.start()
    time.sleep(seconds)
    service.stop()
    thread.join(60)
    receiver.stop()
    latencies = []
    for got in receiver.received:
        body = got.json()
        if body["type"] == "new" and body["event"]["uuid"] in decided:
            latencies.append(got.at - decided[body["event"]["uuid"]])
    lat = np.array(latencies) if latencies else np.array([np.nan])
    return {
        "cameras": cameras,
        "alerts": len(latencies),
        "p50_s": round(float(np.percentile(lat, 50)), 3),
        "p95_s": round(float(np.percentile(lat, 95)), 3),
        "max_s": round(float(lat.max()), 3),
        "frames_read": summary.get("frames_read"),
        "frames_scored": summary.get("frames_scored"),
        "queue_dropped": summary.get("queue_dropped"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--seconds", type=float, default=40.0, help="run time per level")
    parser.add_argument("--encoder-ms", type=float, default=14.0, help="fake model cost/frame")
    parser.add_argument(
        "--schedule",
        choices=["staggered", "synchronized"],
        nargs="+",
        default=["staggered", "synchronized"],
        help="staggered: each camera's hazard 1.5 s after the previous one's; synchronized: "
        "every camera at the same instant (the worst case)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clips = []
        for i in range(max(args.cameras)):
            clips.append(work / f"scene{i}.mp4")
            write_clip(clips[-1], offset_s=1.5 * i)
        for schedule in args.schedule:
            for n in args.cameras:
                use = clips if schedule == "staggered" else clips[:1]
                results.append(run_level(n, args.seconds, args.encoder_ms, use, work))
                results[-1]["schedule"] = schedule
                if args.json:
                    continue
                r = results[-1]
                print(
                    f"{schedule:>12}, {n} camera(s): {r['alerts']} alerts, "
                    f"p50 {r['p50_s']:.3f} s, "
                    f"p95 {r['p95_s']:.3f} s, max {r['max_s']:.3f} s "
                    f"({r['frames_read']} frames read, {r['frames_scored']} scored, "
                    f"{r['queue_dropped']} dropped)"
                )
    out = {"encoder": f"fake, {args.encoder_ms:g} ms/frame", "levels": results}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"encoder: {out['encoder']} (not CLIP; latency of the pipeline, not of a model)")


if __name__ == "__main__":
    main()
