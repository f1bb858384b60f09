"""Soak: N cameras for M minutes, then stop; events made vs stored, memory, reconnects.

Cameras are looped 320x240 clips with motion in every frame and a red "crash" 4 s in
every 10 s, plus (where GStreamer's RTSP server is installed) one RTSP camera whose server
is killed -9 and restarted every --rtsp-restart-s. The image encoder is a FAKE (red
pixels point at the "crash" prompts; no CLIP weights can be had here) that sleeps
--encoder-ms per image in place of the model; everything else is the real service with
SQLite (or --database-url). Figures are about the service's plumbing, never about
detection quality.

    python bench/soak.py [--cameras 4] [--minutes 5] [--encoder-ms 33] [--json]
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.fakes, tests.helpers

from tests.conftest import RtspServer, free_port, make_h264_clip
from tests.fakes import SlowFakeEncoder, write_red_square_clip
from tests.helpers import scrape

from hazardwatch.app import RunSummary, Service
from hazardwatch.records import EventUpdate
from hazardwatch.settings import load_settings
from hazardwatch.storage.engine import create_engine
from hazardwatch.storage.repository import Repository


def start_rtsp(work: Path) -> RtspServer | None:
    try:
        server = RtspServer(make_h264_clip(work / "rtsp.mp4", 60), free_port())
        server.start()
    except Exception as exc:  # no GStreamer here: soak the files alone, and say so
        print(f"(no RTSP camera: {exc})", file=sys.stderr)
        return None
    return server


def soak(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    clip = work / "busy.mp4"
    write_red_square_clip(str(clip), busy=True)
    cameras: list[dict[str, Any]] = [
        {"name": f"cam{i}", "url": str(clip), "loop": True} for i in range(args.cameras)
    ]
    rtsp = start_rtsp(work) if args.rtsp_restart_s > 0 else None
    if rtsp is not None:
        cameras.append({"name": "rtsp", "url": rtsp.url})
    database_url = args.database_url or f"sqlite:///{work / 'soak.db'}"
    settings = load_settings(
        None,
        cameras=cameras,
        capture={"read_timeout_s": 2, "backoff_initial_s": 0.5, "backoff_max_s": 5},
        storage={"database_url": database_url, "data_dir": str(work / "data")},
        media={"dir": str(work / "media")},
        detector={"cooldown_s": 2.0},
        api={"port": free_port()},
    )
    made: set[str] = set()

    def listen(update: EventUpdate) -> None:
        made.add(update.record.uuid)

    service = Service(settings, lambda s: SlowFakeEncoder(args.encoder_ms / 1000), [listen])
    summary: list[RunSummary] = []
    thread = threading.Thread(target=lambda: summary.append(service.run()), daemon=True)
    thread.start()
    samples: list[dict[str, float]] = []
    started = time.monotonic()
    next_restart = started + args.rtsp_restart_s
    end = started + args.minutes * 60
    try:
        time.sleep(5)
        while (now := time.monotonic()) < end:
            if rtsp is not None and now >= next_restart:
                rtsp.stop()  # kill -9
                time.sleep(3)
                rtsp.start()
                next_restart += args.rtsp_restart_s
            m = scrape(settings.api.port)
            samples.append(
                {
                    "t_s": round(now - started, 1),
                    "rss_mb": round(m["process_resident_memory_bytes"] / 2**20, 1),
                    "open_fds": m["process_open_fds"],
                    "threads": m["hazardwatch_threads"],
                    "events_made": len(made),
                    "reconnects": sum(
                        v for k, v in m.items() if k.startswith("hazardwatch_camera_reconnects")
                    ),
                }
            )
            if not args.json:
                print(" ".join(f"{k}={v:g}" for k, v in samples[-1].items()), flush=True)
            time.sleep(min(args.sample_s, max(0.0, end - time.monotonic())))
    finally:
        service.stop()
        thread.join(120)
        if rtsp is not None:
            rtsp.stop()
    repository = Repository(create_engine(database_url))
    stored = []
    while page := repository.list_events(limit=1000, offset=len(stored)):
        stored.extend(page)
    warm = [s for s in samples if s["t_s"] >= 30] or samples
    return {
        "cameras": len(cameras),
        "rtsp_camera": rtsp is not None,
        "minutes": args.minutes,
        "encoder": f"FAKE, {args.encoder_ms:g} ms/image (not CLIP)",
        "events_made": len(made),
        "events_stored": len(stored),
        "missing": len(made - {e.uuid for e in stored}),
        "left_open": sum(e.status == "open" for e in stored),
        "frames_read": summary[0].frames_read if summary else None,
        "frames_scored": summary[0].frames_scored if summary else None,
        "queue_dropped": summary[0].queue_dropped if summary else None,
        "reconnects": samples[-1]["reconnects"] if samples else 0,
        "rss_mb_first_last": [warm[0]["rss_mb"], warm[-1]["rss_mb"]] if warm else None,
        "rss_mb_max": max(s["rss_mb"] for s in samples) if samples else None,
        "open_fds_first_last": [warm[0]["open_fds"], warm[-1]["open_fds"]] if warm else None,
        "threads_first_last": [warm[0]["threads"], warm[-1]["threads"]] if warm else None,
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=4, help="looping file cameras")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--encoder-ms", type=float, default=33.0, help="fake model cost/image")
    parser.add_argument(
        "--rtsp-restart-s", type=float, default=60.0, help="kill -9 the RTSP server this often"
    )
    parser.add_argument("--sample-s", type=float, default=15.0)
    parser.add_argument("--database-url", help="default: SQLite in a temporary directory")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        result = soak(args, Path(tmp))
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{result['cameras']} cameras x {result['minutes']:g} min ({result['encoder']}): "
        f"events made {result['events_made']}, stored {result['events_stored']}, "
        f"missing {result['missing']}, left open {result['left_open']}; "
        f"reconnects {result['reconnects']:g}; RSS {result['rss_mb_first_last']} MB "
        f"(from 30 s on; max {result['rss_mb_max']}), fds {result['open_fds_first_last']}, "
        f"threads {result['threads_first_last']}; frames read {result['frames_read']}, "
        f"scored {result['frames_scored']}, dropped {result['queue_dropped']}"
    )


if __name__ == "__main__":
    main()
