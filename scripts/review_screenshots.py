"""Screenshots of the review page for the documentation (docs/img/review-*.png): the event
list, an event's detail and the camera tiles, at 1280×800 and at a phone's width, taken in
Debian's chromium through Playwright against the real API with synthetic events.

    python scripts/review_screenshots.py [--out docs/img]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.helpers import serve_app  # noqa: E402

from hazardwatch.api.accounts import hash_password  # noqa: E402
from hazardwatch.api.app import ApiState, create_app  # noqa: E402
from hazardwatch.images import ImageOptions, encode_jpeg  # noqa: E402
from hazardwatch.metrics import Metrics  # noqa: E402
from hazardwatch.records import (  # noqa: E402
    CameraState,
    CameraStatus,
    EventRecord,
    RecordingStatus,
    ScoreSample,
    Weather,
)
from hazardwatch.settings import ApiSettings  # noqa: E402
from hazardwatch.storage import migrate  # noqa: E402
from hazardwatch.storage.engine import create_engine  # noqa: E402
from hazardwatch.storage.repository import Repository  # noqa: E402

CAMERAS = ["gate", "ramp-north", "tunnel-east"]
CLASSES = ["traffic_accident", "fire_smoke", "person_down", "debris_on_road", "stalled_vehicle"]


class Cameras:
    def cameras(self) -> list[CameraStatus]:
        recording = RecordingStatus("recording")
        return [
            CameraStatus("gate", "rtsp", CameraState.STREAMING, 10.0, 0.08, 52_310, 0, None,
                         recording),
            CameraStatus("ramp-north", "rtsp", CameraState.STREAMING, 9.9, 0.11, 51_877, 1),
            CameraStatus("tunnel-east", "rtsp", CameraState.BACKING_OFF, 0.0, 41.2, 12_004, 7,
                         "connection refused (10.0.0.23:554)"),
        ]  # fmt: skip


def frame(i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    image = np.full((360, 640, 3), (70, 75, 80), np.uint8)
    cv2.rectangle(image, (0, 220), (640, 360), (55, 55, 55), -1)  # the road
    for lane in range(0, 640, 80):
        cv2.line(image, (lane, 290), (lane + 40, 290), (220, 220, 220), 3)
    x = int(rng.integers(80, 480))
    cv2.rectangle(image, (x, 230), (x + 90, 280), (40, 40, 200), -1)  # a car
    if i % 3 == 0:
        cv2.circle(image, (x + 120, 200), 40, (30, 120, 240), -1)  # smoke, fire
    return image


def seed(repository: Repository, media: Path) -> None:
    start = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)
    clip = media / "gate" / "clip.mp4"
    clip.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         "testsrc=duration=6:size=640x360:rate=10", "-pix_fmt", "yuv420p", "-c:v", "libx264",
         str(clip)],
        check=True,
    )  # fmt: skip
    for i in range(36):
        camera = CAMERAS[i % 3]
        begun = start + timedelta(minutes=7 * i)
        snapshot = Path(camera) / f"{i}.jpg"
        (media / camera).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(media / snapshot), frame(i))
        repository.upsert_event(
            EventRecord(
                uuid=f"00000000-0000-4000-8000-{i:012d}",
                camera=camera,
                class_name=CLASSES[i % len(CLASSES)],
                severity="critical" if i % 2 else "warning",
                status="open" if i == 33 else "closed",
                started_at=begun,
                ended_at=None if i == 33 else begun + timedelta(seconds=4 + i % 9),
                peak_at=begun + timedelta(seconds=2),
                peak_score=0.55 + (i % 7) / 20,
                mean_score=0.5,
                snapshot_path=str(snapshot),
                clip_path="gate/clip.mp4" if camera == "gate" else None,
                weather=Weather(61, "slight rain", 4.0, 0.4, 12.0, 8000.0, begun),
                opened_statistic=9.0 + i % 5,
                opened_threshold=7.3,
            )
        )
    newest = start + timedelta(minutes=7 * 35)
    rng = np.random.default_rng(35)
    samples = []
    for k in range(-600, 400):  # 10 fps, a minute before to 40 s after: a rise, a fall
        t = k / 10
        rise = 0.75 / (1 + np.exp(-(t - 1.0) * 3)) * (1 if t < 12 else np.exp(-(t - 12) / 3))
        score = float(np.clip(0.1 + rise + rng.normal(0, 0.03), 0, 1))
        progress = float(np.clip(rise / 0.5 + rng.normal(0, 0.02), 0, None))
        samples.append(ScoreSample(CAMERAS[35 % 3], newest + timedelta(seconds=t),
                                   CLASSES[35 % len(CLASSES)], score, progress))  # fmt: skip
    repository.add_scores(samples)
    repository.set_verdict("00000000-0000-4000-8000-000000000004", "false_alarm", None, "alice")
    repository.set_verdict("00000000-0000-4000-8000-000000000007", "confirmed", None, "alice")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        print("needs Debian's chromium: apt-get install chromium", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{tmp}/hw.db")
        migrate.upgrade(engine)
        repository = Repository(engine)
        seed(repository, Path(tmp) / "media")
        state = ApiState(repository, Path(tmp) / "media", Metrics(), status=Cameras())
        state.calibration = lambda name: {"calibrated": name != "tunnel-east", "learning": None}
        tiles = {
            name: encode_jpeg(frame(100 + k), ImageOptions(max_width=480))
            for k, name in enumerate(CAMERAS[:2])  # tunnel-east is backing off: no frame
        }
        state.latest_frame = tiles.get
        users = [{"name": "alice", "role": "operator",
                  "password_hash": hash_password("alice pass", n=2**10)}]  # fmt: skip
        app = create_app(state, ApiSettings(users=users))  # type: ignore[arg-type]
        with serve_app(app) as base, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            for width, height, tag in ((1280, 800, "desktop"), (390, 844, "phone")):
                page = browser.new_page(viewport={"width": width, "height": height})
                page.goto(base + "/")
                page.get_by_label("Name").fill("alice")
                page.get_by_label("Password").fill("alice pass")
                page.get_by_role("button", name="Log in").click()
                page.wait_for_selector("#events tbody tr")
                page.wait_for_timeout(500)
                page.screenshot(path=str(args.out / f"review-list-{tag}.png"))
                page.locator("#events tbody tr").first.click()
                page.wait_for_selector("#plot polyline.progress")
                page.wait_for_timeout(1500)
                page.locator("#detail").evaluate("(node) => node.scrollIntoView()")
                page.screenshot(path=str(args.out / f"review-detail-{tag}.png"))
                page.goto(base + "/?view=cameras")
                page.wait_for_selector("#tiles li img[src]")
                page.wait_for_timeout(500)
                page.screenshot(path=str(args.out / f"review-cameras-{tag}.png"))
                page.close()
            browser.close()
        engine.dispose()
    print(f"screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
